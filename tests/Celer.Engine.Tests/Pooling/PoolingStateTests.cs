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
}
