using System.Numerics.Tensors;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using Celer.Models.Weights;

namespace Celer.Backends.Cpu.Kernels;

/// <summary>
/// The linear layer of a 4-bit weight-only checkpoint with the weight kept packed (an eighth of fp32's bytes): codes 8
/// per 32-bit word along k (nibble i of word q is column 8q + i, <c>IntWeights.PackCodes</c>), a (scale, zero point) pair
/// per row and group of <c>groupSize</c> columns, the input already in the weight's column order. Decode steps (up to
/// <see cref="GemvMaxRows"/> rows) never dequantize: with AVX2 a group's contribution is scale · (Σ code · x − zero ·
/// Σ x), the codes widened eight at a time and multiplied into the x rows, the group sums of x taken once per step;
/// without it each weight row is dequantized into a row buffer and dotted. More rows dequantize the whole weight,
/// (code − zero) · scale exactly in fp32, into a scratch matrix once and run the fp32 GEMM paths on it.
/// </summary>
public static unsafe partial class MatMul
{
    /// <param name="scratch">n · k floats (the GEMV uses its first m × groups for x's group sums).</param>
    /// <param name="vectorized">False runs the paths of a CPU without AVX2 (tests compare both).</param>
    public static void RunInt4(float* x, int m, int k, uint* codes, float* scalesAndZeros, int groups, int groupSize, int n, float* y, float* bias, float* scratch, bool vectorized = true)
    {
        vectorized &= Avx2.IsSupported;
        if (m == 0 || n == 0)
        {
            return;
        }

        // The GEMV's group sums of x (m × groups floats) go at the start of the scratch, which it does not otherwise use.
        if (m <= GemvMaxRows && vectorized)
        {
            for (int i = 0; i < m; i++)
            {
                for (int g = 0; g < groups; g++)
                {
                    int start = g * groupSize, end = Math.Min(k, start + groupSize);
                    scratch[(i * groups) + g] = TensorPrimitives.Sum(new ReadOnlySpan<float>(x + ((long)i * k) + start, end - start));
                }
            }
        }

        var args = new Int4Args(x, m, k, codes, scalesAndZeros, groups, groupSize, n, y, bias, scratch, vectorized);
        var loop = new Int4Loop { Args = args, Chunks = KernelScheduling.ChunkCount((long)n * k / 2, 64 * 1024, n) };
        KernelScheduling.For(loop.Chunks, ref loop);
        if (m > GemvMaxRows)
        {
            Run(x, m, k, scratch, DType.F32, n, y, bias);
        }
    }

    /// <summary>Row <paramref name="row"/>[0, k) of the weight: (code − zero) · scale, eight codes per word, AVX2 where present.</summary>
    internal static void DequantizeInt4Row(uint* codes, float* scalesAndZeros, int groupSize, int k, float* row, bool vectorized = true)
    {
        int words = k / 8, q = 0;
        if (vectorized && Avx2.IsSupported)
        {
            for (; q < words; q++)
            {
                float* sz = scalesAndZeros + (2 * (q * 8 / groupSize));
                ((Int4Codes(codes[q]) - Vector256.Create(sz[1])) * Vector256.Create(sz[0])).Store(row + (q * 8));
            }
        }

        DequantizeInt4Words(codes, scalesAndZeros, groupSize, q, words, row);
    }

    /// <summary>The eight codes of a packed word, nibble i in lane i, as floats (AVX2's per-lane shifts).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> Int4Codes(uint word) =>
        Vector256.ConvertToSingle(Avx2.ShiftRightLogicalVariable(Vector256.Create(word), NibbleShifts).AsInt32() & Vector256.Create(15));

    private static readonly Vector256<uint> NibbleShifts = Vector256.Create(0u, 4, 8, 12, 16, 20, 24, 28);

    /// <summary>The scalar form of <see cref="DequantizeInt4Row"/> over words [<paramref name="from"/>, <paramref name="to"/>).</summary>
    internal static void DequantizeInt4Words(uint* codes, float* scalesAndZeros, int groupSize, int from, int to, float* row)
    {
        for (int q = from; q < to; q++)
        {
            float* sz = scalesAndZeros + (2 * (q * 8 / groupSize));
            uint word = codes[q];
            for (int i = 0; i < 8; i++)
            {
                row[(q * 8) + i] = ((word >> (4 * i) & 15) - sz[1]) * sz[0];
            }
        }
    }

    private readonly struct Int4Args(float* x, int m, int k, uint* codes, float* scalesAndZeros, int groups, int groupSize, int n, float* y, float* bias, float* scratch, bool vectorized)
    {
        public readonly float* X = x, ScalesAndZeros = scalesAndZeros, Y = y, Bias = bias, Scratch = scratch;
        public readonly uint* Codes = codes;
        public readonly int M = m, K = k, Groups = groups, GroupSize = groupSize, N = n;
        public readonly bool Vectorized = vectorized;
    }

    /// <summary>
    /// y[i, j] for up to three x rows from row <paramref name="j"/>'s codes, group by group: scale · (Σ code · x − zero · Σ x),
    /// <paramref name="groupSums"/> holding each x row's Σ x per group.
    /// </summary>
    private static void Int4DotRows(in Int4Args a, int j, float* groupSums)
    {
        int m = a.M, k = a.K, words = k / 8, wordsPerGroup = a.GroupSize / 8;
        uint* codes = a.Codes + ((long)j * words);
        float* sz = a.ScalesAndZeros + ((long)j * a.Groups * 2);
        float* x0 = a.X, x1 = a.X + k, x2 = a.X + (2L * k);
        float y0 = 0, y1 = 0, y2 = 0;
        for (int g = 0; g < a.Groups; g++)
        {
            Vector256<float> a0 = default, a1 = default, a2 = default;
            int end = Math.Min(words, (g + 1) * wordsPerGroup);
            for (int q = g * wordsPerGroup; q < end; q++)
            {
                Vector256<float> w = Int4Codes(codes[q]);
                a0 = Vector256.FusedMultiplyAdd(w, Vector256.Load(x0 + (q * 8)), a0);
                if (m > 1)
                {
                    a1 = Vector256.FusedMultiplyAdd(w, Vector256.Load(x1 + (q * 8)), a1);
                }

                if (m > 2)
                {
                    a2 = Vector256.FusedMultiplyAdd(w, Vector256.Load(x2 + (q * 8)), a2);
                }
            }

            float scale = sz[2 * g], zero = sz[(2 * g) + 1];
            y0 += scale * (Vector256.Sum(a0) - (zero * groupSums[g]));
            y1 += m > 1 ? scale * (Vector256.Sum(a1) - (zero * groupSums[a.Groups + g])) : 0;
            y2 += m > 2 ? scale * (Vector256.Sum(a2) - (zero * groupSums[(2 * a.Groups) + g])) : 0;
        }

        float b = a.Bias == null ? 0 : a.Bias[j];
        a.Y[j] = y0 + b;
        if (m > 1)
        {
            a.Y[a.N + j] = y1 + b;
        }

        if (m > 2)
        {
            a.Y[(2L * a.N) + j] = y2 + b;
        }
    }

    /// <summary>
    /// Output rows in chunks: each row dotted with every x row straight from its codes (GEMV with AVX2), dequantized into
    /// a row buffer and dotted (GEMV without it), or dequantized into the scratch (GEMM).
    /// </summary>
    private struct Int4Loop : IChunkLoop
    {
        public Int4Args Args;
        public int Chunks;

        public readonly void Run(int chunk)
        {
            int m = Args.M, k = Args.K, n = Args.N;
            bool gemv = m <= GemvMaxRows;
            var (start, end) = KernelScheduling.Range(chunk, Chunks, n);
            if (gemv && Args.Vectorized)
            {
                for (int j = start; j < end; j++)
                {
                    Int4DotRows(Args, j, Args.Scratch);
                }

                return;
            }

            float* buffer = gemv ? ThreadScratch.Floats(k) : null;
            for (int j = start; j < end; j++)
            {
                float* row = gemv ? buffer : Args.Scratch + ((long)j * k);
                DequantizeInt4Row(Args.Codes + ((long)j * (k / 8)), Args.ScalesAndZeros + ((long)j * Args.Groups * 2), Args.GroupSize, k, row, Args.Vectorized);
                if (!gemv)
                {
                    continue;
                }

                for (int i = 0; i < m; i++)
                {
                    float dot = TensorPrimitives.Dot(new ReadOnlySpan<float>(Args.X + ((long)i * k), k), new ReadOnlySpan<float>(row, k));
                    Args.Y[((long)i * n) + j] = Args.Bias == null ? dot : dot + Args.Bias[j];
                }
            }
        }
    }
}
