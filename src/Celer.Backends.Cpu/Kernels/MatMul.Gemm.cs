using System.Numerics.Tensors;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using Celer.Models.Weights;

namespace Celer.Backends.Cpu.Kernels;

/// <summary>
/// Cache-blocked GEMM in the BLIS shape: the k dimension is cut into blocks of <see cref="KC"/>; for each
/// block a tile of x rows is packed ([kc][MR] per group of MR rows) and every group of NR weight rows is
/// widened and transposed into a panel ([kc][NR]); a register-blocked micro-kernel then computes an
/// MR × NR tile of y as outer products (a broadcast x value times a row of the panel), so no horizontal
/// sums are needed and each widened weight is reused by every row of the x tile.
/// </summary>
public static unsafe partial class MatMul
{
    /// <summary>
    /// k block. A widened panel is NR × KC fp32 (32 KiB at NR = 32), the size of L1 data on current
    /// x86 cores, so the micro-kernel's weight reads hit L1 or L2.
    /// </summary>
    private const int KC = 256;

    /// <summary>m tile. The packed x tile (MT × KC fp32 = 256 KiB) stays in L2 while the panels of the
    /// tile's n range pass over it; MT rows also amortize the widening of each panel.</summary>
    private const int MT = 256;

    /// <summary>Flops worth a task of their own: about 0.1 ms of one core.</summary>
    private const long MinFlopsPerTask = 8_000_000;

    private static void Gemm(float* x, int m, int k, void* w, DType wType, int n, float* y, float* bias)
    {
        // 8 × 32 with 512-bit vectors: 16 accumulators + 2 panel vectors + 1 broadcast of 32 zmm registers.
        // 6 × 16 with 256-bit vectors: 12 accumulators + 3 of 16 ymm registers (the classic AVX2 shape).
        bool wide = Vector512.IsHardwareAccelerated;
        int mr = wide ? 8 : 6;
        int nr = wide ? 32 : 16;

        int mTiles = (m + MT - 1) / MT;
        int tasks = KernelScheduling.ChunkCount(2L * m * n * k, MinFlopsPerTask, long.MaxValue);
        int nTiles = Math.Clamp((tasks + mTiles - 1) / mTiles, 1, (n + nr - 1) / nr);

        var loop = new GemmLoop { Args = new MatMulArgs(x, m, k, w, wType, n, y, bias), MTiles = mTiles, NTiles = nTiles, Mr = mr, Nr = nr };
        KernelScheduling.For(mTiles * nTiles, ref loop);
    }

    private struct GemmLoop : IChunkLoop
    {
        public MatMulArgs Args;
        public int MTiles, NTiles, Mr, Nr;

        public readonly void Run(int item)
        {
            var (i0, i1) = KernelScheduling.Range(item / NTiles, MTiles, Args.M, Mr);
            var (j0, j1) = KernelScheduling.Range(item % NTiles, NTiles, Args.N, Nr);
            if (i0 < i1 && j0 < j1)
            {
                GemmTile(Args.X, Args.K, Args.W, Args.WType, Args.N, Args.Y, Args.Bias, i0, i1, j0, j1, Mr, Nr);
            }
        }
    }

    private static void GemmTile(
        float* x, int k, void* w, DType wType, int n, float* y, float* bias,
        int i0, int i1, int j0, int j1, int mr, int nr)
    {
        int rows = i1 - i0;
        int groups = (rows + mr - 1) / mr;
        float* xPack = ThreadScratch.Floats((groups * mr * KC) + (nr * KC) + KC + (mr * nr));
        float* wPack = xPack + (groups * mr * KC);
        float* rowBuffer = wPack + (nr * KC);
        float* tile = rowBuffer + KC;

        InitializeOutput(y + ((long)i0 * n) + j0, n, rows, j1 - j0, bias == null ? null : bias + j0);
        for (int k0 = 0; k0 < k; k0 += KC)
        {
            int kc = Math.Min(KC, k - k0);
            PackRows(x + ((long)i0 * k) + k0, k, rows, kc, mr, xPack);
            for (int j = j0; j < j1; j += nr)
            {
                int cols = Math.Min(nr, j1 - j);
                PackWeightPanel(w, wType, k, j, cols, k0, kc, nr, wPack, rowBuffer);
                for (int g = 0; g < groups; g++)
                {
                    if (nr == 32)
                    {
                        Kernel8x32(xPack + (g * mr * kc), wPack, kc, tile);
                    }
                    else
                    {
                        Kernel6x16(xPack + (g * mr * kc), wPack, kc, tile);
                    }

                    int r = Math.Min(mr, rows - (g * mr));
                    float* c = y + ((long)(i0 + (g * mr)) * n) + j;
                    for (int t = 0; t < r; t++)
                    {
                        var dst = new Span<float>(c + ((long)t * n), cols);
                        TensorPrimitives.Add(dst, new ReadOnlySpan<float>(tile + (t * nr), cols), dst);
                    }
                }
            }
        }
    }

    /// <summary>Packs rows of x (row stride <paramref name="ldx"/>) as groups of [kc][mr]; missing rows of the last group are zero.</summary>
    private static void PackRows(float* x, int ldx, int rows, int kc, int mr, float* dst)
    {
        int groups = (rows + mr - 1) / mr;
        for (int g = 0; g < groups; g++)
        {
            float* group = dst + (g * mr * kc);
            for (int r = 0; r < mr; r++)
            {
                int row = (g * mr) + r;
                if (row < rows)
                {
                    float* src = x + ((long)row * ldx);
                    for (int p = 0; p < kc; p++)
                    {
                        group[(p * mr) + r] = src[p];
                    }
                }
                else
                {
                    for (int p = 0; p < kc; p++)
                    {
                        group[(p * mr) + r] = 0;
                    }
                }
            }
        }
    }

    /// <summary>
    /// Widens weight rows j..j+cols-1, columns k0..k0+kc-1, into a [kc][nr] fp32 panel; missing rows are zero.
    /// With AVX-512 (bf16 or fp32 weights) 16 rows × 16 columns at a time go through a transpose in registers
    /// (<see cref="PackWeightBlocks"/>); otherwise, and for the columns past the last whole 16, each row is widened
    /// contiguously (vectorized) and then scattered into its panel column.
    /// </summary>
    private static void PackWeightPanel(void* w, DType wType, int k, int j, int cols, int k0, int kc, int nr, float* panel, float* rowBuffer)
    {
        int elementSize = wType.ByteSize();
        if (Avx512F.IsSupported && nr % 16 == 0 && wType is DType.BF16 or DType.F32)
        {
            int packed = kc & ~15;
            PackWeightBlocks(w, wType, k, j, cols, k0, packed, nr, panel);
            if (packed == kc)
            {
                return;
            }

            k0 += packed;
            kc -= packed;
            panel += packed * nr;
        }

        for (int c = 0; c < nr; c++)
        {
            if (c >= cols)
            {
                for (int p = 0; p < kc; p++)
                {
                    panel[(p * nr) + c] = 0;
                }

                continue;
            }

            byte* src = (byte*)w + ((((long)(j + c) * k) + k0) * elementSize);
            float* row = (float*)src;
            if (wType != DType.F32)
            {
                Conversions.ToF32(src, wType, rowBuffer, kc);
                row = rowBuffer;
            }

            for (int p = 0; p < kc; p++)
            {
                panel[(p * nr) + c] = row[p];
            }
        }
    }

    /// <summary>
    /// The first <paramref name="kc"/> (a multiple of 16) panel rows of <see cref="PackWeightPanel"/>: for each 16 weight
    /// rows and 16 columns, the rows are loaded and widened (bf16: zero-extend and shift), transposed in registers
    /// (<see cref="Transpose16x16"/>) and stored as 16 panel rows. The scalar scatter took as long as a third of the
    /// micro-kernel's time at prefill sizes (perf, Qwen3-0.6B shape, 512-token prompt).
    /// </summary>
    private static void PackWeightBlocks(void* w, DType wType, int k, int j, int cols, int k0, int kc, int nr, float* panel)
    {
        Vector512<float>* block = stackalloc Vector512<float>[16];
        for (int c0 = 0; c0 < nr; c0 += 16)
        {
            for (int p = 0; p < kc; p += 16)
            {
                for (int r = 0; r < 16; r++)
                {
                    int c = c0 + r;
                    long at = ((long)(j + c) * k) + k0 + p;
                    block[r] = c >= cols ? Vector512<float>.Zero
                        : wType == DType.F32 ? Vector512.Load((float*)w + at)
                        : Avx512F.ShiftLeftLogical(Avx512F.ConvertToVector512Int32(Vector256.Load((ushort*)w + at)), 16).AsSingle();
                }

                Transpose16x16(block);
                for (int t = 0; t < 16; t++)
                {
                    block[t].Store(panel + ((long)(p + t) * nr) + c0);
                }
            }
        }
    }

    /// <summary>
    /// Transposes 16 vectors of 16 floats in place (row r, element c → row c, element r): unpack pairs of rows within
    /// each 128-bit lane (ps, then pd), which leaves element 4L + q of four rows in lane L, then two rounds of
    /// 128-bit lane shuffles gather each column's four lanes.
    /// </summary>
    internal static void Transpose16x16(Vector512<float>* r)
    {
        Vector512<float>* t = stackalloc Vector512<float>[16];
        for (int i = 0; i < 8; i++)
        {
            t[2 * i] = Avx512F.UnpackLow(r[2 * i], r[(2 * i) + 1]);
            t[(2 * i) + 1] = Avx512F.UnpackHigh(r[2 * i], r[(2 * i) + 1]);
        }

        // u[4i + q], lane L: element 4L + q of rows 4i .. 4i + 3 (written back into r).
        for (int i = 0; i < 4; i++)
        {
            Vector512<double> a = t[4 * i].AsDouble(), b = t[(4 * i) + 1].AsDouble(), c = t[(4 * i) + 2].AsDouble(), d = t[(4 * i) + 3].AsDouble();
            r[4 * i] = Avx512F.UnpackLow(a, c).AsSingle();
            r[(4 * i) + 1] = Avx512F.UnpackHigh(a, c).AsSingle();
            r[(4 * i) + 2] = Avx512F.UnpackLow(b, d).AsSingle();
            r[(4 * i) + 3] = Avx512F.UnpackHigh(b, d).AsSingle();
        }

        // Column 4L + q is lane L of u[q], u[4 + q], u[8 + q], u[12 + q].
        for (int q = 0; q < 4; q++)
        {
            Vector512<float> s0 = Avx512F.Shuffle4x128(r[q], r[4 + q], 0x88), s1 = Avx512F.Shuffle4x128(r[q], r[4 + q], 0xDD);
            Vector512<float> s2 = Avx512F.Shuffle4x128(r[8 + q], r[12 + q], 0x88), s3 = Avx512F.Shuffle4x128(r[8 + q], r[12 + q], 0xDD);
            t[q] = Avx512F.Shuffle4x128(s0, s2, 0x88);
            t[8 + q] = Avx512F.Shuffle4x128(s0, s2, 0xDD);
            t[4 + q] = Avx512F.Shuffle4x128(s1, s3, 0x88);
            t[12 + q] = Avx512F.Shuffle4x128(s1, s3, 0xDD);
        }

        for (int i = 0; i < 16; i++)
        {
            r[i] = t[i];
        }
    }

    /// <summary>tile[8][32] = Σ_p a[p][0..7] ⊗ b[p][0..31] with 512-bit vectors.</summary>
    private static void Kernel8x32(float* a, float* b, int kc, float* tile)
    {
        Vector512<float> c00 = default, c01 = default, c10 = default, c11 = default;
        Vector512<float> c20 = default, c21 = default, c30 = default, c31 = default;
        Vector512<float> c40 = default, c41 = default, c50 = default, c51 = default;
        Vector512<float> c60 = default, c61 = default, c70 = default, c71 = default;
        for (int p = 0; p < kc; p++)
        {
            var b0 = Vector512.Load(b);
            var b1 = Vector512.Load(b + 16);
            var ai = Vector512.Create(a[0]);
            c00 = Vector512.FusedMultiplyAdd(ai, b0, c00);
            c01 = Vector512.FusedMultiplyAdd(ai, b1, c01);
            ai = Vector512.Create(a[1]);
            c10 = Vector512.FusedMultiplyAdd(ai, b0, c10);
            c11 = Vector512.FusedMultiplyAdd(ai, b1, c11);
            ai = Vector512.Create(a[2]);
            c20 = Vector512.FusedMultiplyAdd(ai, b0, c20);
            c21 = Vector512.FusedMultiplyAdd(ai, b1, c21);
            ai = Vector512.Create(a[3]);
            c30 = Vector512.FusedMultiplyAdd(ai, b0, c30);
            c31 = Vector512.FusedMultiplyAdd(ai, b1, c31);
            ai = Vector512.Create(a[4]);
            c40 = Vector512.FusedMultiplyAdd(ai, b0, c40);
            c41 = Vector512.FusedMultiplyAdd(ai, b1, c41);
            ai = Vector512.Create(a[5]);
            c50 = Vector512.FusedMultiplyAdd(ai, b0, c50);
            c51 = Vector512.FusedMultiplyAdd(ai, b1, c51);
            ai = Vector512.Create(a[6]);
            c60 = Vector512.FusedMultiplyAdd(ai, b0, c60);
            c61 = Vector512.FusedMultiplyAdd(ai, b1, c61);
            ai = Vector512.Create(a[7]);
            c70 = Vector512.FusedMultiplyAdd(ai, b0, c70);
            c71 = Vector512.FusedMultiplyAdd(ai, b1, c71);
            a += 8;
            b += 32;
        }

        c00.Store(tile);
        c01.Store(tile + 16);
        c10.Store(tile + 32);
        c11.Store(tile + 48);
        c20.Store(tile + 64);
        c21.Store(tile + 80);
        c30.Store(tile + 96);
        c31.Store(tile + 112);
        c40.Store(tile + 128);
        c41.Store(tile + 144);
        c50.Store(tile + 160);
        c51.Store(tile + 176);
        c60.Store(tile + 192);
        c61.Store(tile + 208);
        c70.Store(tile + 224);
        c71.Store(tile + 240);
    }

    /// <summary>tile[6][16] = Σ_p a[p][0..5] ⊗ b[p][0..15] with 256-bit vectors.</summary>
    private static void Kernel6x16(float* a, float* b, int kc, float* tile)
    {
        Vector256<float> c00 = default, c01 = default, c10 = default, c11 = default;
        Vector256<float> c20 = default, c21 = default, c30 = default, c31 = default;
        Vector256<float> c40 = default, c41 = default, c50 = default, c51 = default;
        for (int p = 0; p < kc; p++)
        {
            var b0 = Vector256.Load(b);
            var b1 = Vector256.Load(b + 8);
            var ai = Vector256.Create(a[0]);
            c00 = Vector256.FusedMultiplyAdd(ai, b0, c00);
            c01 = Vector256.FusedMultiplyAdd(ai, b1, c01);
            ai = Vector256.Create(a[1]);
            c10 = Vector256.FusedMultiplyAdd(ai, b0, c10);
            c11 = Vector256.FusedMultiplyAdd(ai, b1, c11);
            ai = Vector256.Create(a[2]);
            c20 = Vector256.FusedMultiplyAdd(ai, b0, c20);
            c21 = Vector256.FusedMultiplyAdd(ai, b1, c21);
            ai = Vector256.Create(a[3]);
            c30 = Vector256.FusedMultiplyAdd(ai, b0, c30);
            c31 = Vector256.FusedMultiplyAdd(ai, b1, c31);
            ai = Vector256.Create(a[4]);
            c40 = Vector256.FusedMultiplyAdd(ai, b0, c40);
            c41 = Vector256.FusedMultiplyAdd(ai, b1, c41);
            ai = Vector256.Create(a[5]);
            c50 = Vector256.FusedMultiplyAdd(ai, b0, c50);
            c51 = Vector256.FusedMultiplyAdd(ai, b1, c51);
            a += 6;
            b += 16;
        }

        c00.Store(tile);
        c01.Store(tile + 8);
        c10.Store(tile + 16);
        c11.Store(tile + 24);
        c20.Store(tile + 32);
        c21.Store(tile + 40);
        c30.Store(tile + 48);
        c31.Store(tile + 56);
        c40.Store(tile + 64);
        c41.Store(tile + 72);
        c50.Store(tile + 80);
        c51.Store(tile + 88);
    }
}
