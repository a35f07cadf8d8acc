using Celer.Engine;

namespace Celer.Engine.Tests.Sampling;

public class LogprobsTests
{
    internal static float[] RandomLogits(int vocab, int seed, float scale = 8f)
    {
        var rng = new Random(seed);
        var logits = new float[vocab];
        for (int i = 0; i < vocab; i++)
            logits[i] = (float)((rng.NextDouble() * 2 - 1) * scale);
        return logits;
    }

    private static double[] ReferenceLogSoftmax(float[] logits)
    {
        double max = logits.Max();
        double lse = Math.Log(logits.Sum(x => Math.Exp(x - max)));
        return [.. logits.Select(x => x - max - lse)];
    }

    [Theory]
    [InlineData(1)]
    [InlineData(7)]
    [InlineData(257)]
    [InlineData(1003)]
    [InlineData(151_936)]
    public void LogSoftmax_matches_a_double_precision_reference(int vocab)
    {
        var logits = RandomLogits(vocab, seed: vocab);
        var actual = new float[vocab];
        Logprobs.LogSoftmax(logits, actual);
        var expected = ReferenceLogSoftmax(logits);
        // fp32 result of a double-accumulated denominator: |error| ≤ a few ulps of values up to ~|28|.
        for (int i = 0; i < vocab; i++)
            Assert.True(Math.Abs(actual[i] - expected[i]) < 1e-5, $"token {i}: {actual[i]} vs {expected[i]}");
    }

    [Fact]
    public void LogSoftmax_is_stable_for_huge_logits()
    {
        float[] logits = [1000f, 999f, -1000f];
        var actual = new float[3];
        Logprobs.LogSoftmax(logits, actual);
        Assert.Equal(-Math.Log(1 + Math.Exp(-1)), actual[0], 5);
        Assert.Equal(-1 - Math.Log(1 + Math.Exp(-1)), actual[1], 5);
        Assert.True(float.IsFinite(actual[2]) || float.IsNegativeInfinity(actual[2]));
    }

    [Fact]
    public void Compute_returns_the_top_k_by_value_and_the_chosen_rank_against_a_reference()
    {
        const int vocab = 5000;
        var logits = RandomLogits(vocab, seed: 42);
        var expected = ReferenceLogSoftmax(logits);
        var order = Enumerable.Range(0, vocab).OrderByDescending(i => expected[i]).ThenBy(i => i).ToArray();

        int chosen = order[137];
        var result = Logprobs.Compute(logits, chosen, numTop: 20);

        Assert.Equal(chosen, result.Chosen.TokenId);
        Assert.Equal(138, result.Chosen.Rank);
        Assert.Equal(expected[chosen], result.Chosen.Logprob, 1e-5);
        Assert.Equal(order.Take(20), result.Top.Select(t => t.TokenId));
        Assert.Equal(Enumerable.Range(1, 20), result.Top.Select(t => t.Rank));
        foreach (var t in result.Top)
            Assert.Equal(expected[t.TokenId], t.Logprob, 1e-5);
    }

    [Fact]
    public void Ties_go_to_the_lower_id_and_share_the_chosen_rank()
    {
        float[] logits = [1f, 3f, 3f, 2f, 3f, 0.5f];
        var result = Logprobs.Compute(logits, chosenTokenId: 4, numTop: 4);
        Assert.Equal([1, 2, 4, 3], result.Top.Select(t => t.TokenId));
        Assert.Equal(1, result.Chosen.Rank);   // nothing is strictly above a tied maximum
        Assert.Equal(4, Logprobs.Rank(logits, 3));
        Assert.Equal(5, Logprobs.Rank(logits, 0));
        Assert.Equal(6, Logprobs.Rank(logits, 5));
        Assert.Equal(result.Top[0].Logprob, result.Top[2].Logprob);
    }

    [Fact]
    public void Zero_top_logprobs_returns_only_the_chosen_token()
    {
        var result = Logprobs.Compute([0.1f, 0.2f], 0, 0);
        Assert.Empty(result.Top);
        Assert.Equal(2, result.Chosen.Rank);
    }

    [Fact]
    public void Top_k_larger_than_the_vocabulary_returns_the_whole_vocabulary()
    {
        var result = Logprobs.Compute([0.5f, -1f, 2f], 1, 20);
        Assert.Equal([2, 0, 1], result.Top.Select(t => t.TokenId));
    }

    [Fact]
    public void Masked_tokens_have_minus_infinity_and_the_last_rank()
    {
        float[] logits = [float.NegativeInfinity, 0f, 0f];
        var result = Logprobs.Compute(logits, 0, 3);
        Assert.True(float.IsNegativeInfinity(result.Chosen.Logprob));
        Assert.Equal(3, result.Chosen.Rank);
        Assert.Equal((float)Math.Log(0.5), result.Top[0].Logprob, 6);
    }
}
