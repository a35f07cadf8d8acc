using Celer.Backends.Cpu.Kernels;
using Xunit;

namespace Celer.Backends.Cpu.Tests.Kernels;

public unsafe class SoftmaxTests
{
    // Logprobs are x − max − log Σ: the fp32 sum over up to 152K terms is within ~1e-6 relative of exact,
    // so log Σ is within ~1e-6 absolute, plus one rounding of values of magnitude ≲ 30.
    private const double AbsoluteTolerance = 1e-5;

    // The scalar reference sums sequentially, whose error grows with n·ε (≈ 6e-5 at 152K terms, measured).
    private const double ReferenceAbsoluteTolerance = 2e-4;

    [Fact]
    public void LogSoftmax_MatchesDoubleReference_ForAllLengthsAndAVocabulary()
    {
        var random = new Random(61);
        foreach (int n in ElementwiseTestSizes.Lengths.Append(151_936))
        {
            float[] logits = TestData.Floats(random, n).Select(v => v * 20).ToArray();
            var output = new float[n];
            var reference = new float[n];
            fixed (float* pl = logits, po = output, pr = reference)
            {
                Softmax.LogSoftmax(pl, n, po);
                Softmax.LogSoftmaxReference(pl, n, pr);
            }

            double max = n == 0 ? 0 : logits.Max();
            double logSum = Math.Log(logits.Sum(v => Math.Exp(v - max)));
            double[] exact = logits.Select(v => v - max - logSum).ToArray();
            TestData.AssertClose(exact, output, 0, AbsoluteTolerance, default, $"n={n}");
            TestData.AssertClose(exact, reference, 0, ReferenceAbsoluteTolerance, default, $"n={n} reference");
        }
    }

    [Fact]
    public void LogSoftmax_InPlace_AndExtremeLogits()
    {
        float[] logits = [1000f, 0f, -1000f, 1000f];
        fixed (float* pl = logits)
        {
            Softmax.LogSoftmax(pl, logits.Length, pl);
        }

        Assert.Equal(-MathF.Log(2), logits[0], 6);
        Assert.Equal(-MathF.Log(2), logits[3], 6);
        Assert.Equal(-1000f - MathF.Log(2), logits[1], 3);
        Assert.Equal(-2000f - MathF.Log(2), logits[2], 3);
    }

    [Theory]
    [InlineData(0, 5)]
    [InlineData(1, 1)]
    [InlineData(5, 0)]
    [InlineData(7, 3)]
    [InlineData(100, 20)]
    [InlineData(1000, 20)]
    [InlineData(12, 50)]
    public void TopK_MatchesAStableSort_WithTiesByLowerIndex(int count, int k)
    {
        var random = new Random((count * 100) + k);
        // Few distinct values, so ties are everywhere.
        float[] values = Enumerable.Range(0, count).Select(_ => (float)random.Next(-5, 6)).ToArray();
        var expected = values.Select((v, i) => (Value: v, Index: i)).OrderByDescending(e => e.Value).ThenBy(e => e.Index).Take(k).ToArray();

        var indices = new int[Math.Max(k, 1)];
        var top = new float[Math.Max(k, 1)];
        int written;
        fixed (float* pv = values, pt = top)
        fixed (int* pi = indices)
        {
            written = Softmax.TopK(pv, count, k, pi, pt);
        }

        Assert.Equal(expected.Length, written);
        Assert.Equal(expected.Select(e => e.Index).ToArray(), indices.Take(written).ToArray());
        Assert.Equal(expected.Select(e => e.Value).ToArray(), top.Take(written).ToArray());
    }
}
