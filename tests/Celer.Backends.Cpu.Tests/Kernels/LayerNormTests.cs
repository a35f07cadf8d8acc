using Celer.Backends.Cpu.Kernels;
using Xunit;

namespace Celer.Backends.Cpu.Tests.Kernels;

public unsafe class LayerNormTests
{
    // fp32 mean, centred variance and three products against double: a few ε (1.2e-7) relative to the row's scale; 1e-5
    // of the largest output is far inside that and far below a wrong mean, variance or bias (order 1e-1).
    private const double Tolerance = 1e-5;
    private const float Eps = 1e-12f;

    [Fact]
    public void Run_MatchesDoubleReference_ForAllLengths()
    {
        var random = new Random(21);
        const int rows = 3;
        foreach (int d in ElementwiseTestSizes.Lengths.Where(d => d > 0))
        {
            // A common offset per row: a one-pass variance (E[x²] − mean²) would lose it.
            float[] x = [.. TestData.Floats(random, rows * d).Select((v, i) => v + (10f * (i / d)))];
            float[] w = TestData.Floats(random, d), b = TestData.Floats(random, d);
            var y = new float[rows * d];
            fixed (float* px = x, py = y, pw = w, pb = b)
            {
                LayerNorm.Run(px, py, pw, pb, Eps, rows, d);
            }

            TestData.AssertClose(DoubleReference(x, w, b, rows, d), y, 0, Tolerance, default, $"d={d}");
        }
    }

    [Fact]
    public void AddAndNorm_NormalizesTheSumIntoTheResidual()
    {
        var random = new Random(22);
        const int rows = 4, d = 384;
        float[] x = TestData.Floats(random, rows * d), residual = TestData.Floats(random, rows * d);
        float[] w = TestData.Floats(random, d), b = TestData.Floats(random, d);
        float[] sum = [.. x.Zip(residual, (a, c) => a + c)];
        fixed (float* px = x, pr = residual, pw = w, pb = b)
        {
            LayerNorm.AddAndNorm(px, pr, pw, pb, Eps, rows, d);
        }

        TestData.AssertClose(DoubleReference(sum, w, b, rows, d), residual, 0, Tolerance, default, "residual");
    }

    private static double[] DoubleReference(float[] x, float[] w, float[] b, int rows, int d)
    {
        var y = new double[rows * d];
        for (int r = 0; r < rows; r++)
        {
            var row = x.Skip(r * d).Take(d).Select(v => (double)v).ToArray();
            double mean = row.Average(), variance = row.Select(v => (v - mean) * (v - mean)).Average();
            for (int i = 0; i < d; i++)
            {
                y[(r * d) + i] = ((row[i] - mean) / Math.Sqrt(variance + Eps) * w[i]) + b[i];
            }
        }

        return y;
    }
}
