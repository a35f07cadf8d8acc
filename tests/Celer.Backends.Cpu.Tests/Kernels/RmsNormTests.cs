using Celer.Backends.Cpu.Kernels;
using Celer.Models.Weights;
using Xunit;

namespace Celer.Backends.Cpu.Tests.Kernels;

public unsafe class RmsNormTests
{
    // The kernel and the double reference differ by the fp32 rounding of Σx² (order-dependent, ~√d·ε relative),
    // of rsqrt and of two products: a few ε = 1.2e-7 each; 1e-5 relative is far inside that and far below any real bug.
    private const double RelativeTolerance = 1e-5;
    private const float Eps = 1e-6f;

    [Theory]
    [InlineData(DType.F32)]
    [InlineData(DType.F16)]
    [InlineData(DType.BF16)]
    public void Run_MatchesReferences_ForAllLengths(DType type)
    {
        var random = new Random(11 + (int)type);
        const int rows = 3;
        foreach (int d in ElementwiseTestSizes.Lengths)
        {
            float[] x = TestData.Floats(random, rows * d);
            var (stored, w) = TestData.Weights(random, d, type);
            var y = new float[rows * d];
            var reference = new float[rows * d];
            fixed (float* px = x, py = y, pr = reference)
            fixed (byte* pw = stored)
            {
                RmsNorm.Run(px, py, pw, type, Eps, rows, d);
                RmsNorm.RunReference(px, pr, pw, type, Eps, rows, d);
            }

            double[] exact = DoubleReference(x, w, rows, d);
            TestData.AssertClose(exact, y, RelativeTolerance, 0, default, $"d={d} y");
            TestData.AssertClose(exact, reference, RelativeTolerance, 0, default, $"d={d} reference");
        }
    }

    [Fact]
    public void Run_WithoutWeight_IsUnitRms()
    {
        var random = new Random(5);
        const int d = 97;
        float[] x = TestData.Floats(random, 2 * d);
        var y = new float[2 * d];
        fixed (float* px = x, py = y)
        {
            RmsNorm.Run(px, py, null, DType.F32, Eps, 2, d);
        }

        for (int r = 0; r < 2; r++)
        {
            double meanSquare = y.Skip(r * d).Take(d).Sum(v => (double)v * v) / d;
            Assert.Equal(1.0, meanSquare, 4);
        }
    }

    [Fact]
    public void Run_InPlace_MatchesOutOfPlace()
    {
        var random = new Random(6);
        const int rows = 4, d = 130;
        float[] x = TestData.Floats(random, rows * d);
        var (stored, _) = TestData.Weights(random, d, DType.BF16);
        var outOfPlace = new float[rows * d];
        float[] inPlace = (float[])x.Clone();
        fixed (float* px = x, po = outOfPlace, pi = inPlace)
        fixed (byte* pw = stored)
        {
            RmsNorm.Run(px, po, pw, DType.BF16, Eps, rows, d);
            RmsNorm.Run(pi, pi, pw, DType.BF16, Eps, rows, d);
        }

        Assert.Equal(outOfPlace, inPlace);
    }

    [Theory]
    [InlineData(1, 1)]
    [InlineData(3, 17)]
    [InlineData(5, 257)]
    [InlineData(70, 1024)]
    public void AddAndNorm_UpdatesResidualAndNormalizes(int rows, int d)
    {
        var random = new Random(rows * 1000 + d);
        float[] x = TestData.Floats(random, (long)rows * d);
        float[] residual = TestData.Floats(random, (long)rows * d);
        var (stored, w) = TestData.Weights(random, d, DType.BF16);
        float[] xRef = (float[])x.Clone();
        float[] residualRef = (float[])residual.Clone();

        var sum = new double[rows * d];
        var sumAsFloat = new float[rows * d];
        for (int i = 0; i < sum.Length; i++)
        {
            sumAsFloat[i] = x[i] + residual[i];
            sum[i] = sumAsFloat[i];
        }

        fixed (float* px = x, pres = residual, pxr = xRef, presr = residualRef)
        fixed (byte* pw = stored)
        {
            RmsNorm.AddAndNorm(px, pres, pw, DType.BF16, Eps, rows, d);
            RmsNorm.AddAndNormReference(pxr, presr, pw, DType.BF16, Eps, rows, d);
        }

        // The residual sum is one fp32 addition: exact equality.
        Assert.Equal(sumAsFloat, residual);
        Assert.Equal(sumAsFloat, residualRef);
        double[] exact = DoubleReference(sumAsFloat, w, rows, d);
        TestData.AssertClose(exact, x, RelativeTolerance, 0, default, "x");
        TestData.AssertClose(exact, xRef, RelativeTolerance, 0, default, "xRef");
    }

    [Theory]
    [InlineData(DType.F32)]
    [InlineData(DType.F16)]
    [InlineData(DType.BF16)]
    public void RunGemma_MatchesReferences_ForAllLengths(DType type)
    {
        var random = new Random(31 + (int)type);
        const int rows = 3;
        foreach (int d in ElementwiseTestSizes.Lengths)
        {
            float[] x = TestData.Floats(random, rows * d);
            var (stored, w) = TestData.Weights(random, d, type);
            var y = new float[rows * d];
            var reference = new float[rows * d];
            fixed (float* px = x, py = y, pr = reference)
            fixed (byte* pw = stored)
            {
                RmsNorm.RunGemma(px, py, pw, type, Eps, rows, d);
                RmsNorm.RunGemmaReference(px, pr, pw, type, Eps, rows, d);
            }

            double[] exact = DoubleReference(x, GemmaWeight(w), rows, d);
            TestData.AssertClose(exact, y, RelativeTolerance, 0, default, $"d={d} y");
            TestData.AssertClose(exact, reference, RelativeTolerance, 0, default, $"d={d} reference");
        }
    }

    [Theory]
    [InlineData(1, 1)]
    [InlineData(3, 17)]
    [InlineData(5, 257)]
    [InlineData(70, 1024)]
    public void GemmaAddAndNorm_NormalizesTheSublayerOutputAddsItAndNormalizesTheSum(int rows, int d)
    {
        var random = new Random(rows * 1000 + d + 7);
        float[] x = TestData.Floats(random, (long)rows * d);
        float[] residual = TestData.Floats(random, (long)rows * d);
        var (postStored, post) = TestData.Weights(random, d, DType.BF16);
        var (nextStored, next) = TestData.Weights(random, d, DType.F32);
        float[] xRef = (float[])x.Clone(), residualRef = (float[])residual.Clone();
        double[] normalizedOutput = DoubleReference(x, GemmaWeight(post), rows, d);
        double[] sum = normalizedOutput.Select((v, i) => v + residual[i]).ToArray();

        fixed (float* px = x, pres = residual, pxr = xRef, presr = residualRef)
        fixed (byte* pp = postStored, pn = nextStored)
        {
            RmsNorm.GemmaAddAndNorm(px, pres, pp, DType.BF16, pn, DType.F32, Eps, rows, d);
            RmsNorm.GemmaAddAndNormReference(pxr, presr, pp, DType.BF16, pn, DType.F32, Eps, rows, d);
        }

        // The sum's error is the normalized output's (a few ε of it), measured against the larger of the two terms.
        double[] sumScale = sum.Select((v, i) => Math.Abs(normalizedOutput[i]) + Math.Abs(residualRef[i])).ToArray();
        TestData.AssertClose(sum, residual, RelativeTolerance, 0, sumScale, "residual");
        TestData.AssertClose(sum, residualRef, RelativeTolerance, 0, sumScale, "residualRef");
        // Each x is the norm of its own fp32 residual (a residual element that nearly cancels differs relatively more).
        TestData.AssertClose(DoubleReference(residual, GemmaWeight(next), rows, d), x, RelativeTolerance, 0, default, "x");
        TestData.AssertClose(DoubleReference(residualRef, GemmaWeight(next), rows, d), xRef, RelativeTolerance, 0, default, "xRef");
    }

    /// <summary>Gemma's weight 1 + w, formed in fp32 as transformers forms it (<c>1.0 + weight.float()</c>).</summary>
    private static float[] GemmaWeight(float[] w) => w.Select(v => 1f + v).ToArray();

    private static double[] DoubleReference(float[] x, float[] w, int rows, int d)
    {
        var y = new double[rows * d];
        for (int r = 0; r < rows; r++)
        {
            double sumOfSquares = 0;
            for (int i = 0; i < d; i++)
            {
                sumOfSquares += (double)x[(r * d) + i] * x[(r * d) + i];
            }

            double inverseRms = 1 / Math.Sqrt((sumOfSquares / d) + Eps);
            for (int i = 0; i < d; i++)
            {
                y[(r * d) + i] = x[(r * d) + i] * inverseRms * w[i];
            }
        }

        return y;
    }
}
