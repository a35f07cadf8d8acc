using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using Celer.Models.Weights;

namespace Celer.Backends.Cpu.Kernels;

/// <summary>
/// Skinny GEMM for decode batches (a handful of rows, one per sequence): W is streamed from memory once,
/// as in the GEMV, but a register-blocked micro-kernel dots <see cref="SkinnyRows"/> x rows with
/// <see cref="SkinnyCols"/> weight rows at a time, so every weight vector loaded feeds several FMAs and
/// every x vector is loaded once per column tile. Compared with the GEMM this packs nothing but a widened
/// copy of the current weight rows (bf16/f16 only), which is contiguous and vectorized, and it needs no
/// m tile large enough to amortize a transpose.
/// </summary>
public static unsafe partial class MatMul
{
    /// <summary>x rows per micro-kernel call; a batch's leftover rows (m mod 4) run one at a time.</summary>
    private const int SkinnyRows = 4;

    /// <summary>Weight rows (output columns) per micro-kernel call.</summary>
    private const int SkinnyCols = 4;

    /// <summary>
    /// k block. A block of the 4 widened weight rows is 16 KiB of fp32 and a group's 4 x rows another 16 KiB,
    /// so both stay in a 32–48 KiB L1 while the micro-kernel runs, and the other groups' x rows in L2. At 2048
    /// the pair was 64 KiB, and the 1B shape's batch-8 decode ran 19 % slower on a Zen 5 core (48 KiB L1: 74.6
    /// and 77.6 against 89.0 and 92.7 tokens/s in alternated runs).
    /// </summary>
    private const int SkinnyKC = 1024;

    private static bool SkinnyIsAccelerated => Vector512.IsHardwareAccelerated || Vector256.IsHardwareAccelerated;

    private static void SkinnyGemm(float* x, int m, int k, void* w, DType wType, int n, float* y, float* bias)
    {
        long bytes = (long)n * k * wType.ByteSize();
        // 256 KiB of weights per chunk (as the GEMV): hides the task start, small enough to balance cores.
        var loop = new SkinnyLoop
        {
            Args = new MatMulArgs(x, m, k, w, wType, n, y, bias),
            Chunks = KernelScheduling.ChunkCount(bytes, 256 * 1024, (n + SkinnyCols - 1) / SkinnyCols),
        };
        KernelScheduling.For(loop.Chunks, ref loop);
    }

    private struct SkinnyLoop : IChunkLoop
    {
        public MatMulArgs Args;
        public int Chunks;

        public readonly void Run(int chunk)
        {
            var (j0, j1) = KernelScheduling.Range(chunk, Chunks, Args.N, SkinnyCols);
            if (j0 < j1)
            {
                SkinnyColumns(Args.X, Args.M, Args.K, Args.W, Args.WType, Args.N, Args.Y, Args.Bias, j0, j1);
            }
        }
    }

    /// <summary>y[:, j0..j1) for all m rows, k block by k block; each weight element is read from memory once.</summary>
    private static void SkinnyColumns(float* x, int m, int k, void* w, DType wType, int n, float* y, float* bias, int j0, int j1)
    {
        int elementSize = wType.ByteSize();
        float* panel = wType == DType.F32 ? null : ThreadScratch.Floats(SkinnyCols * Math.Min(k, SkinnyKC));
        float** rows = stackalloc float*[SkinnyCols];
        byte** sources = stackalloc byte*[SkinnyCols];
        float* sums = stackalloc float[SkinnyRows * SkinnyCols];

        InitializeOutput(y + j0, n, m, j1 - j0, bias == null ? null : bias + j0);
        for (int k0 = 0; k0 < k; k0 += SkinnyKC)
        {
            int kc = Math.Min(SkinnyKC, k - k0);
            for (int j = j0; j < j1; j += SkinnyCols)
            {
                int cols = Math.Min(SkinnyCols, j1 - j);
                for (int c = 0; c < SkinnyCols; c++)
                {
                    // A short last tile repeats its last column; those sums are computed and dropped.
                    int column = j + Math.Min(c, cols - 1);
                    byte* src = (byte*)w + ((((long)column * k) + k0) * elementSize);
                    sources[c] = src;
                    rows[c] = panel == null ? (float*)src : panel + ((long)c * kc);
                    if (wType == DType.F16)
                    {
                        if (c < cols)
                        {
                            Conversions.ToF32(src, wType, rows[c], kc);
                        }
                        else
                        {
                            rows[c] = rows[cols - 1];
                        }
                    }
                }

                // The first row group widens bf16 as it goes and leaves the fp32 rows in the panel for the
                // others, so the weight stream from memory overlaps with arithmetic instead of preceding it.
                int i = 0;
                for (; i + SkinnyRows <= m; i += SkinnyRows)
                {
                    float* xGroup = x + ((long)i * k) + k0;
                    if (i == 0 && wType == DType.BF16)
                    {
                        Dot4x4WideningBF16(xGroup, k, (ushort**)sources, rows, kc, sums);
                    }
                    else
                    {
                        // The second group runs from cache while memory would idle: it prefetches the next
                        // tile's weight rows, so that tile's first group finds them in L2.
                        byte* prefetch = i == SkinnyRows && j + SkinnyCols < j1
                            ? (byte*)w + ((((long)(j + SkinnyCols) * k) + k0) * elementSize)
                            : null;
                        Dot4x4(xGroup, k, rows, kc, sums, prefetch, (long)k * elementSize, elementSize);
                    }

                    AddTile(sums, SkinnyRows, cols, y + ((long)i * n) + j, n);
                }

                for (; i < m; i++)
                {
                    Dot1x4(x + ((long)i * k) + k0, rows, kc, sums);
                    AddTile(sums, 1, cols, y + ((long)i * n) + j, n);
                }
            }
        }
    }

    private static void AddTile(float* sums, int rowCount, int cols, float* y, int ldy)
    {
        for (int r = 0; r < rowCount; r++)
        {
            for (int c = 0; c < cols; c++)
            {
                y[((long)r * ldy) + c] += sums[(r * SkinnyCols) + c];
            }
        }
    }

    /// <summary>sums[r·4 + c] = x_r · w_c over <paramref name="length"/> for 4 x rows (stride <paramref name="ldx"/>) and 4 weight rows.</summary>
    private static void Dot4x4(float* x, int ldx, float** w, int length, float* sums, byte* prefetch = null, long prefetchStride = 0, int elementSize = 0)
    {
        int p = 0;
        if (Vector512.IsHardwareAccelerated)
        {
            p = Dot4x4Vector512<F32WeightRows>(x, ldx, (void**)w, w, length, sums, prefetch, prefetchStride, elementSize);
        }
        else
        {
            // 16 ymm registers hold 4 × 2 accumulators, not 4 × 4: two passes over the x rows.
            p = Dot4x2Vector256(x, ldx, w[0], w[1], length, sums);
            Dot4x2Vector256(x, ldx, w[2], w[3], length, sums + 2);
        }

        for (; p < length; p++)
        {
            for (int r = 0; r < SkinnyRows; r++)
            {
                for (int c = 0; c < SkinnyCols; c++)
                {
                    sums[(r * SkinnyCols) + c] += x[((long)r * ldx) + p] * w[c][p];
                }
            }
        }
    }

    /// <summary>
    /// The vector part of <see cref="Dot4x4"/> and <see cref="Dot4x4WideningBF16"/>: 16 accumulators, 4 weight
    /// vectors and one x vector of 32 zmm registers. <typeparamref name="TRows"/> says how a weight vector is
    /// read from <paramref name="w"/> (and, widening, stored to <paramref name="panel"/>); as a struct type
    /// argument it gets its own compiled copy of this loop, with the load inlined. With
    /// <paramref name="prefetch"/>, also asks for the same span of 4 rows there (row stride
    /// <paramref name="prefetchStride"/> bytes, <paramref name="elementSize"/> bytes per element) to be brought into L2.
    /// </summary>
    private static int Dot4x4Vector512<TRows>(float* x, int ldx, void** w, float** panel, int length, float* sums, byte* prefetch, long prefetchStride, int elementSize)
        where TRows : struct, ISkinnyWeightRows
    {
        void* w0 = w[0], w1 = w[1], w2 = w[2], w3 = w[3];
        float* d0 = panel[0], d1 = panel[1], d2 = panel[2], d3 = panel[3];
        float* x0 = x, x1 = x + ldx, x2 = x + (2L * ldx), x3 = x + (3L * ldx);
        Vector512<float> a00 = default, a01 = default, a02 = default, a03 = default;
        Vector512<float> a10 = default, a11 = default, a12 = default, a13 = default;
        Vector512<float> a20 = default, a21 = default, a22 = default, a23 = default;
        Vector512<float> a30 = default, a31 = default, a32 = default, a33 = default;
        int p = 0;
        for (; p <= length - 16; p += 16)
        {
            if (prefetch != null && Sse.IsSupported)
            {
                byte* line = prefetch + ((long)p * elementSize);
                Sse.Prefetch1(line);
                Sse.Prefetch1(line + prefetchStride);
                Sse.Prefetch1(line + (2 * prefetchStride));
                Sse.Prefetch1(line + (3 * prefetchStride));
            }

            var b0 = TRows.Load16(w0, d0, p);
            var b1 = TRows.Load16(w1, d1, p);
            var b2 = TRows.Load16(w2, d2, p);
            var b3 = TRows.Load16(w3, d3, p);
            var a = Vector512.Load(x0 + p);
            a00 = Vector512.FusedMultiplyAdd(a, b0, a00);
            a01 = Vector512.FusedMultiplyAdd(a, b1, a01);
            a02 = Vector512.FusedMultiplyAdd(a, b2, a02);
            a03 = Vector512.FusedMultiplyAdd(a, b3, a03);
            a = Vector512.Load(x1 + p);
            a10 = Vector512.FusedMultiplyAdd(a, b0, a10);
            a11 = Vector512.FusedMultiplyAdd(a, b1, a11);
            a12 = Vector512.FusedMultiplyAdd(a, b2, a12);
            a13 = Vector512.FusedMultiplyAdd(a, b3, a13);
            a = Vector512.Load(x2 + p);
            a20 = Vector512.FusedMultiplyAdd(a, b0, a20);
            a21 = Vector512.FusedMultiplyAdd(a, b1, a21);
            a22 = Vector512.FusedMultiplyAdd(a, b2, a22);
            a23 = Vector512.FusedMultiplyAdd(a, b3, a23);
            a = Vector512.Load(x3 + p);
            a30 = Vector512.FusedMultiplyAdd(a, b0, a30);
            a31 = Vector512.FusedMultiplyAdd(a, b1, a31);
            a32 = Vector512.FusedMultiplyAdd(a, b2, a32);
            a33 = Vector512.FusedMultiplyAdd(a, b3, a33);
        }

        sums[0] = Vector512.Sum(a00);
        sums[1] = Vector512.Sum(a01);
        sums[2] = Vector512.Sum(a02);
        sums[3] = Vector512.Sum(a03);
        sums[4] = Vector512.Sum(a10);
        sums[5] = Vector512.Sum(a11);
        sums[6] = Vector512.Sum(a12);
        sums[7] = Vector512.Sum(a13);
        sums[8] = Vector512.Sum(a20);
        sums[9] = Vector512.Sum(a21);
        sums[10] = Vector512.Sum(a22);
        sums[11] = Vector512.Sum(a23);
        sums[12] = Vector512.Sum(a30);
        sums[13] = Vector512.Sum(a31);
        sums[14] = Vector512.Sum(a32);
        sums[15] = Vector512.Sum(a33);
        return p;
    }

    /// <summary>4 x rows · 2 weight rows with 256-bit vectors; writes columns 0 and 1 of a 4-wide sums tile.</summary>
    private static int Dot4x2Vector256(float* x, int ldx, float* w0, float* w1, int length, float* sums)
    {
        float* x0 = x, x1 = x + ldx, x2 = x + (2L * ldx), x3 = x + (3L * ldx);
        Vector256<float> a00 = default, a01 = default, a10 = default, a11 = default;
        Vector256<float> a20 = default, a21 = default, a30 = default, a31 = default;
        int p = 0;
        for (; p <= length - 8; p += 8)
        {
            var b0 = Vector256.Load(w0 + p);
            var b1 = Vector256.Load(w1 + p);
            var a = Vector256.Load(x0 + p);
            a00 = Vector256.FusedMultiplyAdd(a, b0, a00);
            a01 = Vector256.FusedMultiplyAdd(a, b1, a01);
            a = Vector256.Load(x1 + p);
            a10 = Vector256.FusedMultiplyAdd(a, b0, a10);
            a11 = Vector256.FusedMultiplyAdd(a, b1, a11);
            a = Vector256.Load(x2 + p);
            a20 = Vector256.FusedMultiplyAdd(a, b0, a20);
            a21 = Vector256.FusedMultiplyAdd(a, b1, a21);
            a = Vector256.Load(x3 + p);
            a30 = Vector256.FusedMultiplyAdd(a, b0, a30);
            a31 = Vector256.FusedMultiplyAdd(a, b1, a31);
        }

        sums[0] = Vector256.Sum(a00);
        sums[1] = Vector256.Sum(a01);
        sums[SkinnyCols] = Vector256.Sum(a10);
        sums[SkinnyCols + 1] = Vector256.Sum(a11);
        sums[2 * SkinnyCols] = Vector256.Sum(a20);
        sums[(2 * SkinnyCols) + 1] = Vector256.Sum(a21);
        sums[3 * SkinnyCols] = Vector256.Sum(a30);
        sums[(3 * SkinnyCols) + 1] = Vector256.Sum(a31);
        return p;
    }

    /// <summary>sums[c] = x · w_c over <paramref name="length"/> for one x row and 4 weight rows.</summary>
    private static void Dot1x4(float* x, float** w, int length, float* sums)
    {
        float* w0 = w[0], w1 = w[1], w2 = w[2], w3 = w[3];

        // The skinny path runs only where 256-bit vectors are accelerated (SkinnyIsAccelerated).
        int p = Vector512.IsHardwareAccelerated
            ? VectorLoops.Dot4<Vector512Ops, Vector512<float>>(x, w0, w1, w2, w3, length, out sums[0], out sums[1], out sums[2], out sums[3])
            : VectorLoops.Dot4<Vector256Ops, Vector256<float>>(x, w0, w1, w2, w3, length, out sums[0], out sums[1], out sums[2], out sums[3]);

        for (; p < length; p++)
        {
            sums[0] += x[p] * w0[p];
            sums[1] += x[p] * w1[p];
            sums[2] += x[p] * w2[p];
            sums[3] += x[p] * w3[p];
        }
    }

    /// <summary>
    /// <see cref="Dot4x4"/> over bf16 weight rows, widening each weight vector once and storing it to
    /// <paramref name="panel"/> (4 fp32 rows of <paramref name="length"/>) for the next row groups.
    /// </summary>
    private static void Dot4x4WideningBF16(float* x, int ldx, ushort** w, float** panel, int length, float* sums)
    {
        int p = 0;
        if (Vector512.IsHardwareAccelerated)
        {
            p = Dot4x4Vector512<WideningBF16Rows>(x, ldx, (void**)w, panel, length, sums, null, 0, 0);
        }
        else
        {
            // Without 512-bit registers the widening is its own vectorized pass.
            for (int c = 0; c < SkinnyCols; c++)
            {
                Conversions.BF16ToF32(w[c], panel[c], length);
            }

            Dot4x4(x, ldx, panel, length, sums);
            return;
        }

        for (; p < length; p++)
        {
            for (int c = 0; c < SkinnyCols; c++)
            {
                float weight = Conversions.BF16ToF32(w[c][p]);
                panel[c][p] = weight;
                for (int r = 0; r < SkinnyRows; r++)
                {
                    sums[(r * SkinnyCols) + c] += x[((long)r * ldx) + p] * weight;
                }
            }
        }
    }

    /// <summary>How <see cref="Dot4x4Vector512{TRows}"/> reads 16 weights of one row.</summary>
    private interface ISkinnyWeightRows
    {
        /// <summary>row[p..p+16) as fp32; <paramref name="panelRow"/> is the row's fp32 copy, where one is kept.</summary>
        static abstract Vector512<float> Load16(void* row, float* panelRow, int p);
    }

    /// <summary>fp32 weight rows (or rows already widened into the panel), loaded as they are.</summary>
    private readonly struct F32WeightRows : ISkinnyWeightRows
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector512<float> Load16(void* row, float* panelRow, int p) => Vector512.Load((float*)row + p);
    }

    /// <summary>bf16 weight rows widened to fp32 as they are loaded, the result also stored to the panel row.</summary>
    private readonly struct WideningBF16Rows : ISkinnyWeightRows
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector512<float> Load16(void* row, float* panelRow, int p)
        {
            var bits = Vector512.WidenLower(Vector256.Load((ushort*)row + p).ToVector512Unsafe());
            var value = Vector512.ShiftLeft(bits, 16).AsSingle();
            value.Store(panelRow + p);
            return value;
        }
    }
}
