using System.Numerics.Tensors;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using Celer.Models.Weights;

namespace Celer.Backends.Cpu.Kernels;

/// <summary>
/// The linear layer of an integer weight-only checkpoint with the weight kept as its codes: 4-bit codes 8 per 32-bit word
/// along k (nibble i of word q is column 8q + i, <c>IntWeights.PackCodes</c>; an eighth of fp32's bytes) or 8-bit codes a
/// byte each (a quarter), a (scale, zero point) pair per row and group of <c>groupSize</c> columns, the input already in
/// the weight's column order. Decode steps (up to <see cref="GemvMaxRows"/> rows) never dequantize: with AVX2 a group's
/// contribution is scale · (Σ code · x − zero · Σ x), the codes widened eight at a time and multiplied into the x rows,
/// the group sums of x taken once per step; without it each weight row is dequantized into a row buffer and dotted.
/// More rows dequantize the whole weight, (code − zero) · scale exactly in fp32, into a scratch matrix once and run the
/// fp32 GEMM paths on it.
/// </summary>
public static unsafe partial class MatMul
{
    /// <param name="scratch">n · k floats (the GEMV uses its first m × groups for x's group sums).</param>
    /// <param name="vectorized">False runs the paths of a CPU without AVX2 (tests compare both).</param>
    public static void RunInt4(float* x, int m, int k, uint* codes, float* scalesAndZeros, int groups, int groupSize, int n, float* y, float* bias, float* scratch, bool vectorized = true) =>
        RunInt<Int4Codes>(x, m, k, (byte*)codes, scalesAndZeros, groups, groupSize, n, y, bias, scratch, vectorized);

    /// <inheritdoc cref="RunInt4"/>
    public static void RunInt8(float* x, int m, int k, byte* codes, float* scalesAndZeros, int groups, int groupSize, int n, float* y, float* bias, float* scratch, bool vectorized = true) =>
        RunInt<Int8Codes>(x, m, k, codes, scalesAndZeros, groups, groupSize, n, y, bias, scratch, vectorized);

    private static void RunInt<TCodes>(float* x, int m, int k, byte* codes, float* scalesAndZeros, int groups, int groupSize, int n, float* y, float* bias, float* scratch, bool vectorized)
        where TCodes : struct, IIntCodes
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

        var args = new IntArgs(x, m, k, codes, scalesAndZeros, groups, groupSize, n, y, bias, scratch, vectorized);
        var loop = new IntLoop<TCodes> { Args = args, Chunks = KernelScheduling.ChunkCount(n * TCodes.RowBytes(k), 64 * 1024, n) };
        KernelScheduling.For(loop.Chunks, ref loop);
        if (m > GemvMaxRows)
        {
            Run(x, m, k, scratch, DType.F32, n, y, bias);
        }
    }

    /// <summary>Row <paramref name="row"/>[0, k) of the weight: (code − zero) · scale, eight codes at a time, AVX2 where present.</summary>
    internal static void DequantizeRow<TCodes>(byte* codes, float* scalesAndZeros, int groupSize, int k, float* row, bool vectorized = true)
        where TCodes : struct, IIntCodes
    {
        int eights = k / 8, q = 0;
        if (vectorized && Avx2.IsSupported)
        {
            for (; q < eights; q++)
            {
                float* sz = scalesAndZeros + (2 * (q * 8 / groupSize));
                ((TCodes.Eight(codes, q) - Vector256.Create(sz[1])) * Vector256.Create(sz[0])).Store(row + (q * 8));
            }
        }

        DequantizeEights<TCodes>(codes, scalesAndZeros, groupSize, q, eights, row);
    }

    /// <summary>The scalar form of <see cref="DequantizeRow{TCodes}"/> over columns [8 <paramref name="from"/>, 8 <paramref name="to"/>).</summary>
    internal static void DequantizeEights<TCodes>(byte* codes, float* scalesAndZeros, int groupSize, int from, int to, float* row)
        where TCodes : struct, IIntCodes
    {
        for (int c = from * 8; c < to * 8; c++)
        {
            float* sz = scalesAndZeros + (2 * (c / groupSize));
            row[c] = (TCodes.Code(codes, c) - sz[1]) * sz[0];
        }
    }

    /// <summary>How a row of codes is laid out: the 4- and 8-bit layouts (<see cref="Int4Codes"/>, <see cref="Int8Codes"/>).</summary>
    internal interface IIntCodes
    {
        /// <summary>Bytes of a row of <paramref name="k"/> codes.</summary>
        static abstract long RowBytes(int k);

        /// <summary>Codes 8q … 8q + 7 of a row, lane i code 8q + i, as floats (AVX2).</summary>
        static abstract Vector256<float> Eight(byte* row, int q);

        /// <summary>Code <paramref name="c"/> of a row.</summary>
        static abstract int Code(byte* row, int c);
    }

    /// <summary>8 codes per 32-bit word, nibble i of word q the code of column 8q + i.</summary>
    internal readonly struct Int4Codes : IIntCodes
    {
        private static readonly Vector256<uint> NibbleShifts = Vector256.Create(0u, 4, 8, 12, 16, 20, 24, 28);

        public static long RowBytes(int k) => k / 2;

        // AVX2's per-lane shifts put nibble i in lane i.
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector256<float> Eight(byte* row, int q) =>
            Vector256.ConvertToSingle(Avx2.ShiftRightLogicalVariable(Vector256.Create(((uint*)row)[q]), NibbleShifts).AsInt32() & Vector256.Create(15));

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static int Code(byte* row, int c) => (int)((((uint*)row)[c / 8] >> (4 * (c % 8))) & 15);
    }

    /// <summary>A byte per code.</summary>
    internal readonly struct Int8Codes : IIntCodes
    {
        public static long RowBytes(int k) => k;

        // vpmovzxbd: eight bytes widened to eight int32 lanes.
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector256<float> Eight(byte* row, int q) => Vector256.ConvertToSingle(Avx2.ConvertToVector256Int32(row + (q * 8)));

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static int Code(byte* row, int c) => row[c];
    }

    private readonly struct IntArgs(float* x, int m, int k, byte* codes, float* scalesAndZeros, int groups, int groupSize, int n, float* y, float* bias, float* scratch, bool vectorized)
    {
        public readonly float* X = x, ScalesAndZeros = scalesAndZeros, Y = y, Bias = bias, Scratch = scratch;
        public readonly byte* Codes = codes;
        public readonly int M = m, K = k, Groups = groups, GroupSize = groupSize, N = n;
        public readonly bool Vectorized = vectorized;
    }

    /// <summary>
    /// y[i, j] for up to three x rows from row <paramref name="j"/>'s codes, group by group: scale · (Σ code · x − zero · Σ x),
    /// <paramref name="groupSums"/> holding each x row's Σ x per group.
    /// </summary>
    private static void IntDotRows<TCodes>(in IntArgs a, int j, float* groupSums)
        where TCodes : struct, IIntCodes
    {
        int m = a.M, k = a.K, eights = k / 8, eightsPerGroup = a.GroupSize / 8;
        byte* codes = a.Codes + (j * TCodes.RowBytes(k));
        float* sz = a.ScalesAndZeros + ((long)j * a.Groups * 2);
        float* x0 = a.X, x1 = a.X + k, x2 = a.X + (2L * k);
        float y0 = 0, y1 = 0, y2 = 0;
        for (int g = 0; g < a.Groups; g++)
        {
            Vector256<float> a0 = default, a1 = default, a2 = default;
            int end = Math.Min(eights, (g + 1) * eightsPerGroup);
            for (int q = g * eightsPerGroup; q < end; q++)
            {
                Vector256<float> w = TCodes.Eight(codes, q);
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
    private struct IntLoop<TCodes> : IChunkLoop
        where TCodes : struct, IIntCodes
    {
        public IntArgs Args;
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
                    IntDotRows<TCodes>(Args, j, Args.Scratch);
                }

                return;
            }

            float* buffer = gemv ? ThreadScratch.Floats(k) : null;
            for (int j = start; j < end; j++)
            {
                float* row = gemv ? buffer : Args.Scratch + ((long)j * k);
                DequantizeRow<TCodes>(Args.Codes + (j * TCodes.RowBytes(k)), Args.ScalesAndZeros + ((long)j * Args.Groups * 2), Args.GroupSize, k, row, Args.Vectorized);
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
