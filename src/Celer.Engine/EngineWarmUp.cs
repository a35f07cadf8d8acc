using System.Diagnostics;
using Celer.Tokenization;

namespace Celer.Engine;

/// <summary>
/// Requests run through the whole engine path at startup (input processing, scheduler, runner, sampler, detokenizer,
/// output processing) so that the first user request meets compiled code. .NET compiles a method when it is first
/// called: a fresh CPU process compiled ~600 methods (50-150 ms of JIT on 2 cores) inside its first request, which took
/// 2.5-3x as long as the steady state although the kernels had been warmed by padding steps; after one round of these
/// requests it compiles ~50 (celer bench latency's own loop) and takes ~1.5-1.7x (benchmarks/results/cpu-first-request-*.json).
/// <para>
/// The requests run on a driver of their own, with no stats listener, over the executor the serving engine is built on
/// afterwards. That engine's driver has its own scheduler, so they leave no trace in it: its counters and metrics start
/// at zero, its prefix cache is empty (the warm-up's blocks belong to a block pool nobody reads again) and request ids
/// cannot collide. Every request is seeded, so the runner's shared seed source, from which unseeded requests draw, is
/// not advanced either: a user's request samples exactly what it would have without the warm-up.
/// </para>
/// </summary>
internal static class EngineWarmUp
{
    /// <summary>The warm-up's request ids: the driver is private, but a log or a trace should not mistake them for users'.</summary>
    public const string RequestIdPrefix = "celer-warmup-";

    /// <summary>
    /// A short chat-sized prompt: long enough for the CPU's tiled prefill GEMM (batched over the round's requests), short
    /// enough that a round costs a few dozen steps even on a large model.
    /// </summary>
    public const int PromptTokens = 32;

    // A round's five sequences decode ~60 tokens between them: the per-token host code passes the JIT's tier-up count
    // (30 calls) within one round.
    private const int OutputTokens = 16;

    /// <summary>The seed of the warm-up's sampled requests (per request: the runner's seed source is left alone).</summary>
    public const long Seed = 1234;

    private const string PromptText =
        "def fibonacci(n):\n    \"\"\"Return the n-th Fibonacci number.\"\"\"\n    a, b = 0, 1\n    for _ in range(n):\n        a, b = b, a + b\n    return a\n";

    /// <summary>
    /// Runs rounds of warm-up requests (at least one, more while <paramref name="budget"/> lasts), each to its end and
    /// until the runner has been told that every one finished. Returns the requests run (0 when the context is too short
    /// to generate anything).
    /// </summary>
    /// <param name="executor">Not disposed: the serving engine takes it over.</param>
    public static int Run(EngineArgs args, IModelExecutor executor, Tokenizer? tokenizer, EngineModelInfo model, TimeSpan budget)
    {
#pragma warning disable CA2000 // disposing the driver would dispose the executor, which the serving engine owns next
        var driver = new EngineDriver(args, executor, tokenizer, model, listener: null);
#pragma warning restore CA2000
        int[] prompt = Prompt(tokenizer, driver.InputProcessor.VocabSize, Math.Min(PromptTokens, driver.InputProcessor.MaxModelLen / 2), model.ImageTokenId);
        int outputTokens = Math.Min(OutputTokens, driver.InputProcessor.MaxModelLen - prompt.Length);
        if (prompt.Length == 0 || outputTokens == 0)
        {
            return 0;
        }

        var clock = Stopwatch.StartNew();
        int requests = 0;
        do
        {
            double now = EngineClock.Now;
            foreach (GenerateRequest request in Round(driver.InputProcessor.Pooler, prompt, outputTokens, args.MaxLogprobs, tokenizer is not null, requests))
            {
                driver.Add(request, driver.InputProcessor.Process(request, now), now);
                requests++;
            }

            // HasWork stays true until the scheduler has handed the finished ids to the runner, which then drops the
            // requests' state: nothing of them is left in the executor.
            while (driver.HasWork)
            {
                driver.Step();
            }
        }
        while (clock.Elapsed < budget);

        return requests;
    }

    /// <summary>
    /// One round, admitted together so decode runs batched and, as the shorter ones end, down to one sequence: greedy and
    /// sampled (temperature 1, and top-k / top-p / penalties), with and without logprobs, n = 2, a stop string where there is
    /// a tokenizer. A pooling model gets one request of the task it serves.
    /// </summary>
    private static IEnumerable<GenerateRequest> Round(PoolerConfig? pooler, int[] prompt, int outputTokens, int maxLogprobs, bool hasTokenizer, int firstId)
    {
        int id = firstId;
        string NextId() => RequestIdPrefix + id++;
        if (pooler is not null)
        {
            yield return GenerateRequest.ForPooling(NextId(), prompt, new PoolingParams { Task = pooler.Classifier is null ? PoolingTask.Embed : PoolingTask.Classify });
            yield break;
        }

        // The end of sequence may come at once: ignore_eos lets every request run its length. Greedy requests carry the
        // seed too: the runner draws a seed for every request that has none, greedy or not.
        var greedy = new SamplingParams { Temperature = 0, Seed = Seed, IgnoreEos = true, MaxTokens = outputTokens };
        int logprobs = Math.Min(2, maxLogprobs);
        yield return new GenerateRequest(NextId(), prompt, greedy);
        yield return new GenerateRequest(NextId(), prompt, greedy with { MaxTokens = Math.Max(1, outputTokens / 2), Logprobs = logprobs, PromptLogprobs = logprobs });
        yield return new GenerateRequest(NextId(), prompt, greedy with { Temperature = 1, N = 2 });
        yield return new GenerateRequest(NextId(), prompt, greedy with
        {
            Temperature = 0.8f,
            TopK = 40,
            TopP = 0.9f,
            MinP = 0.01f,
            PresencePenalty = 0.5f,
            FrequencyPenalty = 0.5f,
            RepetitionPenalty = 1.1f,
            MaxTokens = Math.Max(1, outputTokens * 3 / 4),
            Logprobs = logprobs,
            // Never met in practice; the detokenizer still searches every new piece of text for it.
            Stop = hasTokenizer ? ["\u0000\u0000"] : [],
        });
    }

    /// <summary>
    /// Code text as the tokenizer reads it (its encoder warmed too), repeated to the length; token ids in order without one.
    /// Never <paramref name="imageTokenId"/>: a placeholder without its image would have the warm-up refused, and the model
    /// with it (ids in order reach a small image token id).
    /// </summary>
    internal static int[] Prompt(Tokenizer? tokenizer, int vocabSize, int length, int? imageTokenId = null)
    {
        int[] text = tokenizer?.Encode(PromptText) ?? [];
        var prompt = new int[Math.Max(0, length)];
        for (int i = 0; i < prompt.Length; i++)
        {
            prompt[i] = text.Length > 0 ? text[i % text.Length] % vocabSize : i % vocabSize;
            if (prompt[i] == imageTokenId)
            {
                prompt[i] = (prompt[i] + 1) % vocabSize;
            }
        }

        return prompt;
    }
}
