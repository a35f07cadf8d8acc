using Xunit;

namespace Celer.Engine.Tests.Pooling;

/// <summary>What each pooling type keeps of the rows a request's steps hand it (sentence-transformers' modes).</summary>
public sealed class PoolingStateTests
{
    private static readonly float[][] Rows = [[1f, -4f, 2f], [3f, -1f, -5f], [-2f, -3f, 0.5f]];

    [Theory]
    [InlineData(PoolingType.Mean, new[] { 2f / 3, -8f / 3, -2.5f / 3 })]
    [InlineData(PoolingType.Max, new[] { 3f, -1f, 2f })]
    [InlineData(PoolingType.Last, new[] { -2f, -3f, 0.5f })]
    public void A_pooling_type_keeps_its_statistic_of_the_rows(PoolingType type, float[] expected)
    {
        var state = new PoolingState(new PoolingParams(), new PoolerConfig(type, Normalize: false, HiddenSize: 3));
        foreach (float[] row in Rows)
        {
            state.Add(row);
        }

        float[] pooled = state.Finish(classifier: null);
        Assert.Equal(expected.Length, pooled.Length);
        for (int i = 0; i < expected.Length; i++)
        {
            Assert.Equal(expected[i], pooled[i], 1e-6f);
        }

        // A preempted request starts over: the maximum of the rows seen after the reset only.
        state.Reset();
        state.Add(Rows[2]);
        Assert.Equal(Rows[2], state.Finish(classifier: null));
    }

    /// <summary>
    /// include_prompt false: mean and max pooling leave out the first rows, as sentence-transformers' mask does; CLS and
    /// last-token pooling are handed their one row and keep it.
    /// </summary>
    [Theory]
    [InlineData(PoolingType.Mean, 1, new[] { 0.5f, -2f, -2.25f })]
    [InlineData(PoolingType.Max, 1, new[] { 3f, -1f, 0.5f })]
    [InlineData(PoolingType.Mean, 2, new[] { -2f, -3f, 0.5f })]
    [InlineData(PoolingType.Last, 2, new[] { -2f, -3f, 0.5f })]
    public void Excluded_prompt_rows_are_left_out_of_the_pooling(PoolingType type, int excluded, float[] expected)
    {
        var state = new PoolingState(new PoolingParams { ExcludedPromptTokens = excluded }, new PoolerConfig(type, Normalize: false, HiddenSize: 3));
        for (int pass = 0; pass < 2; pass++)
        {
            // The second pass after a preemption's reset: the prompt rows are left out again.
            foreach (float[] row in Rows)
            {
                state.Add(row);
            }

            Assert.Equal(expected, state.Finish(classifier: null));
            state.Reset();
        }
    }

    [Theory]
    [InlineData(PoolingType.Mean)]
    [InlineData(PoolingType.Max)]
    public void Rows_that_are_all_prompt_pool_to_zeros(PoolingType type)
    {
        var state = new PoolingState(new PoolingParams { ExcludedPromptTokens = 3 }, new PoolerConfig(type, Normalize: true, HiddenSize: 3));
        foreach (float[] row in Rows)
        {
            state.Add(row);
        }

        Assert.Equal(new float[3], state.Finish(classifier: null));
    }
}
