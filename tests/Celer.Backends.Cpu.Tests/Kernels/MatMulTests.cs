using Celer.Backends.Cpu.Kernels;
using Celer.Models.Weights;
using Xunit;

namespace Celer.Backends.Cpu.Tests.Kernels;

public unsafe class MatMulTests
{
    // fp32 dot products of length k ≤ ~1000 in any summation order stay within a few ulps times √k of the
    // exact sum of |x·w| terms (Higham's bound is k·ε, random rounding gives √k·ε ≈ 2e-6 here); 1e-5 of Σ|x·w|
    // leaves margin for blocked accumulation and still fails on any wrong element or index.
    private const double Tolerance = 1e-5;

    public static TheoryData<int, int, int> Shapes => new()
    {
        // Decode (GEMV) shapes, including the parallel path (n·k·4 bytes > 256 KiB).
        { 1, 1, 1 }, { 1, 7, 3 }, { 1, 257, 33 }, { 2, 64, 31 }, { 3, 255, 17 }, { 1, 300, 1000 },
        // GEMM shapes: odd m/n/k, m and n not multiples of the 8×32 / 6×16 tiles, k across the 256 block.
        { 4, 31, 5 }, { 5, 256, 32 }, { 7, 257, 65 }, { 9, 513, 33 }, { 17, 100, 100 }, { 33, 1, 47 },
        // Parallel GEMM (more than 8 Mflop) with m tails and a k tail.
        { 67, 300, 257 },
        // The GEMM's AVX-512 panel packing (16 × 16 transposes): whole blocks only, and k blocks ending in a scalar tail.
        { 70, 512, 96 }, { 96, 1000, 70 },
        // Skinny GEMM: k across its 1024 blocks with a vector tail, a column tail, row tails of 1..3.
        { 8, 2100, 9 }, { 5, 4099, 6 }, { 7, 2048, 130 }, { 64, 33, 70 }, { 65, 40, 33 },
    };

    /// <summary>Every decode batch size from the skinny GEMM's first (4) to past its row groups (33), odd k and n.</summary>
    public static TheoryData<int, int, int> DecodeBatchShapes()
    {
        var data = new TheoryData<int, int, int>();
        for (int m = 4; m <= 33; m++)
        {
            data.Add(m, 67 + m, 37 + (m % 5));
        }

        return data;
    }

    [Theory]
    [MemberData(nameof(DecodeBatchShapes))]
    public void Run_DecodeBatch_MatchesDoublePrecisionReference(int m, int k, int n) => Run_MatchesDoublePrecisionReference(m, k, n);

    [Theory]
    [MemberData(nameof(Shapes))]
    public void Run_MatchesDoublePrecisionReference(int m, int k, int n)
    {
        foreach (DType type in new[] { DType.F32, DType.F16, DType.BF16 })
        {
            foreach (bool withBias in new[] { false, true })
            {
                var random = new Random(HashCode.Combine(m, k, n, type, withBias) & 0x7FFFFFFF);
                float[] x = TestData.Floats(random, (long)m * k);
                var (stored, w) = TestData.Weights(random, (long)n * k, type);
                float[]? bias = withBias ? TestData.Floats(random, n) : null;

                var y = new float[m * n];
                var reference = new float[m * n];
                fixed (float* px = x, py = y, pr = reference, pb = bias)
                fixed (byte* pw = stored)
                {
                    MatMul.Run(px, m, k, pw, type, n, py, pb);
                    MatMul.RunReference(px, m, k, pw, type, n, pr, pb);
                }

                var (exact, scale) = DoubleReference(x, w, bias, m, k, n);
                TestData.AssertClose(exact, y, Tolerance, 0, scale, $"{type} bias={withBias} y");
                TestData.AssertClose(exact, reference, Tolerance, 0, scale, $"{type} bias={withBias} reference");
            }
        }
    }

    [Fact]
    public void Run_WithEmptyK_WritesBias()
    {
        float[] bias = [1.5f, -2.25f, 3f];
        var y = new float[2 * 3];
        fixed (float* pb = bias, py = y)
        {
            MatMul.Run(null, 2, 0, null, DType.BF16, 3, py, pb);
        }

        Assert.Equal([1.5f, -2.25f, 3f, 1.5f, -2.25f, 3f], y);
    }

    [Fact]
    public void Run_WithEmptyM_WritesNothing()
    {
        var y = new float[] { 42f };
        fixed (float* py = y)
        {
            MatMul.Run(null, 0, 4, null, DType.F32, 1, py);
        }

        Assert.Equal(42f, y[0]);
    }

    /// <summary>Exact (double) y and, per element, Σ|x·w| + |bias|, the scale of its rounding error.</summary>
    private static (double[] Exact, double[] Scale) DoubleReference(float[] x, float[] w, float[]? bias, int m, int k, int n)
    {
        var exact = new double[m * n];
        var scale = new double[m * n];
        for (int i = 0; i < m; i++)
        {
            for (int j = 0; j < n; j++)
            {
                double sum = bias?[j] ?? 0;
                double magnitude = Math.Abs(bias?[j] ?? 0);
                for (int p = 0; p < k; p++)
                {
                    double term = (double)x[(i * k) + p] * w[(j * k) + p];
                    sum += term;
                    magnitude += Math.Abs(term);
                }

                exact[(i * n) + j] = sum;
                scale[(i * n) + j] = magnitude;
            }
        }

        return (exact, scale);
    }
}
