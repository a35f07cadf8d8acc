namespace Celer.Cli.Bench;

/// <summary>
/// vLLM's "random" dataset: prompts of random token ids, lengths drawn uniformly from
/// [len·(1−ratio), len·(1+ratio)], from a seeded generator so runs are comparable.
/// </summary>
internal static class RandomPrompts
{
    public static List<(int[] PromptIds, int OutputLen)> Create(int count, int inputLen, int outputLen, double rangeRatio, int vocabSize, int seed)
    {
        var random = new Random(seed);
        var prompts = new List<(int[], int)>(count);
        for (var i = 0; i < count; i++)
        {
            var promptLen = Draw(random, inputLen, rangeRatio);
            var ids = new int[promptLen];
            for (var t = 0; t < promptLen; t++)
                ids[t] = random.Next(vocabSize);
            prompts.Add((ids, Draw(random, outputLen, rangeRatio)));
        }
        return prompts;
    }

    private static int Draw(Random random, int length, double rangeRatio)
    {
        var low = Math.Max(1, (int)Math.Floor(length * (1 - rangeRatio)));
        var high = Math.Max(low, (int)Math.Ceiling(length * (1 + rangeRatio)));
        return random.Next(low, high + 1);
    }
}
