using Celer.Engine.Scheduling;

namespace Celer.Engine.Tests.Support;

internal static class TestRequests
{
    /// <summary>Distinct non-zero token ids from a seeded generator, so prompts never coincide by accident.</summary>
    public static int[] RandomTokens(Random random, int count, int vocabSize = 1000) =>
        Enumerable.Range(0, count).Select(_ => random.Next(1, vocabSize)).ToArray();

    public static Request Make(
        string id,
        IReadOnlyList<int> prompt,
        int maxTokens = 16,
        int priority = 0,
        double arrivalTime = 0,
        string? cacheSalt = null,
        int? eosTokenId = null,
        SamplingParams? samplingParams = null) =>
        new(id, prompt, samplingParams ?? new SamplingParams { MaxTokens = maxTokens }, maxTokens, eosTokenId, priority, arrivalTime, cacheSalt);
}
