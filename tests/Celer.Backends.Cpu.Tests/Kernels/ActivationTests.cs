using Celer.Backends.Cpu.Kernels;
using Celer.Models.Backend;
using Xunit;

namespace Celer.Backends.Cpu.Tests.Kernels;

public unsafe class ActivationTests
{
    // Vectorized exp is within ~1 ulp; with the division and product that is a few ε (1.2e-7) relative.
    private const double RelativeTolerance = 1e-6;

    [Fact]
    public void SiluMul_SeparateGateAndUp_MatchesReferences_ForAllLengths()
    {
        var random = new Random(21);
        const int rows = 2;
        foreach (int d in ElementwiseTestSizes.Lengths)
        {
            float[] gate = Scaled(TestData.Floats(random, rows * d));
            float[] up = TestData.Floats(random, rows * d);
            var output = new float[rows * d];
            var reference = new float[rows * d];
            fixed (float* pg = gate, pu = up, po = output, pr = reference)
            {
                Activation.SiluMul(pg, pu, po, rows, d);
                Activation.SiluMulReference(pg, pu, d, pr, rows, d);
            }

            double[] exact = DoubleReference(gate, up, rows, d, d);
            TestData.AssertClose(exact, output, RelativeTolerance, 1e-30, default, $"d={d}");
            TestData.AssertClose(exact, reference, RelativeTolerance, 1e-30, default, $"d={d} reference");
        }
    }

    [Fact]
    public void SiluMul_SaturatesWithoutNaN()
    {
        float[] gate = [-100f, -88.8f, 0f, 88.8f, 100f, -1000f, 1000f, 1f, -1f, 2f, -2f, 3f, -3f, 4f, -4f, 5f, 6f];
        float[] up = Enumerable.Repeat(1f, gate.Length).ToArray();
        var output = new float[gate.Length];
        fixed (float* pg = gate, pu = up, po = output)
        {
            Activation.SiluMul(pg, pu, po, 1, gate.Length);
        }

        Assert.All(output, v => Assert.False(float.IsNaN(v)));
        Assert.Equal(1000f, output[6]);
        Assert.Equal(0f, output[5]);
        Assert.Equal(0f, output[2]);
    }

    [Fact]
    public void GeluTanhMul_MatchesReferences_ForAllLengths()
    {
        var random = new Random(23);
        const int rows = 2;
        foreach (int d in ElementwiseTestSizes.Lengths)
        {
            float[] gateUp = TestData.Floats(random, rows * 2 * d);
            for (int r = 0; r < rows; r++)
            {
                for (int i = 0; i < d; i++)
                {
                    gateUp[(r * 2 * d) + i] *= 8;   // gates over ±8: gelu's dip below zero, its tails and its linear part
                }
            }

            var output = new float[rows * d];
            var reference = new float[rows * d];
            fixed (float* pg = gateUp, po = output, pr = reference)
            {
                Activation.GeluTanhMulFused(pg, po, rows, d);
                Activation.GeluTanhMulReference(pg, pr, rows, d);
            }

            var exact = new double[rows * d];
            var scale = new double[rows * d];
            for (int r = 0; r < rows; r++)
            {
                for (int i = 0; i < d; i++)
                {
                    double g = gateUp[(r * 2 * d) + i], up = gateUp[(r * 2 * d) + d + i];
                    double inner = Math.Sqrt(2 / Math.PI) * (g + (0.044715 * g * g * g));
                    exact[(r * d) + i] = 0.5 * g * (1 + Math.Tanh(inner)) * up;
                    // 1 + tanh cancels for very negative gates, so its rounding is relative to g·up, not to the result.
                    scale[(r * d) + i] = Math.Abs(g * up);
                }
            }

            TestData.AssertClose(exact, output, RelativeTolerance, 0, scale, $"d={d}");
            TestData.AssertClose(exact, reference, RelativeTolerance, 0, scale, $"d={d} reference");
        }
    }

    /// <summary>Gates spread over ±8, where silu goes from almost 0 through its minimum to almost linear.</summary>
    private static float[] Scaled(float[] values)
    {
        for (int i = 0; i < values.Length; i++)
        {
            values[i] *= 8;
        }

        return values;
    }

    private static double[] DoubleReference(float[] gate, float[] up, int rows, int d, int stride)
    {
        var exact = new double[rows * d];
        for (int r = 0; r < rows; r++)
        {
            for (int i = 0; i < d; i++)
            {
                double g = gate[(r * stride) + i];
                exact[(r * d) + i] = g / (1 + Math.Exp(-g)) * up[(r * stride) + i];
            }
        }

        return exact;
    }

    /// <summary>erf at tabulated points (to 16 digits), both signs: the exact GELU is 0.5·x·(1 + erf(x/√2)) at x = √2·t.</summary>
    [Theory]
    [InlineData(0.1, 0.1124629160182849)]
    [InlineData(0.5, 0.5204998778130465)]
    [InlineData(1.0, 0.8427007929497149)]
    [InlineData(1.5, 0.9661051464753108)]
    [InlineData(2.0, 0.9953222650189527)]
    [InlineData(2.5, 0.9995930479825550)]
    [InlineData(3.0, 0.9999779095030014)]
    [InlineData(4.0, 0.9999999845827421)]
    public void Gelu_Exact_FollowsTheErrorFunction(double t, double erf)
    {
        foreach (double sign in new[] { 1.0, -1.0 })
        {
            double x = sign * t * Math.Sqrt(2);
            float[] values = [(float)x];
            fixed (float* p = values)
            {
                Activation.Gelu(p, 1, GeluForm.Erf);
            }

            // x rounded to fp32 shifts gelu by ~ε·x; the result is then rounded once.
            double expected = 0.5 * (float)x * (1 + (sign * erf));
            Assert.True(Math.Abs(values[0] - expected) <= 4e-7 * Math.Max(1, Math.Abs(expected)), $"gelu({x}) = {values[0]}, expected {expected}");
        }
    }

    [Fact]
    public void Gelu_Tanh_MatchesTheFormula_AndExactDiffersFromIt()
    {
        var random = new Random(31);
        float[] x = [.. TestData.Floats(random, 1000).Select(v => v * 8)];
        float[] tanh = [.. x], exact = [.. x];
        fixed (float* pt = tanh, pe = exact)
        {
            Activation.Gelu(pt, x.Length, GeluForm.Tanh);
            Activation.Gelu(pe, x.Length, GeluForm.Erf);
        }

        double[] formula = [.. x.Select(v => 0.5 * v * (1 + Math.Tanh(Math.Sqrt(2 / Math.PI) * (v + (0.044715 * v * v * v)))))];
        TestData.AssertClose(formula, tanh, RelativeTolerance, 1e-6, default, "tanh gelu");
        // The two forms differ by up to ~1e-3 around |x| ≈ 2: a kernel that mixed them up would not pass both tests.
        Assert.True(x.Select((_, i) => Math.Abs(tanh[i] - exact[i])).Max() > 1e-4);
    }

    [Fact]
    public void Gelu_Quick_MatchesClipsFormula()
    {
        var random = new Random(37);
        float[] x = [.. TestData.Floats(random, 1000).Select(v => v * 8)];
        float[] quick = [.. x];
        fixed (float* p = quick)
        {
            Activation.Gelu(p, x.Length, GeluForm.Quick);
        }

        // transformers' QuickGELUActivation: x * sigmoid(1.702 * x); erf GELU differs from it by up to ~0.02.
        double[] formula = [.. x.Select(v => v / (1 + Math.Exp(-1.702 * v)))];
        TestData.AssertClose(formula, quick, RelativeTolerance, 1e-6, default, "quick gelu");
    }
}
