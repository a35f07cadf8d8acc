using System.Numerics.Tensors;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using Celer.Models.Weights;

namespace Celer.Backends.Cpu.Kernels;

/// <summary>
/// The linear layer: y[m, n] = x[m, k] · W[n, k]ᵀ (+ bias[n]), with W stored row-major as HF
/// <c>nn.Linear</c> stores it (out_features × in_features) in F32, F16 or BF16, widened to fp32 on the fly.
/// Accumulation is fp32 throughout.
/// <para>
/// Few rows (decode) are memory-bound: each weight row is streamed once and dotted with every x row
/// (<see cref="Gemv"/>). A decode batch of 4 to 64 rows goes to the skinny GEMM (MatMul.Skinny.cs), which
/// still streams W once but register-blocks 4 rows × 4 weight rows. More rows are compute-bound and go to
/// the cache-blocked GEMM (MatMul.Gemm.cs), which packs a panel of W once and reuses it for a tile of x rows.
/// </para>
/// </summary>
public static unsafe partial class MatMul
{
    /// <summary>
    /// Up to this many rows the plain GEMV (each weight row streamed once and dotted with every x row while
    /// it is in L1, bf16 widened inside the dot) is the whole cost of decode and needs no panel.
    /// </summary>
    internal const int GemvMaxRows = 3;

    /// <summary>
    /// Up to this many rows the skinny GEMM (MatMul.Skinny.cs) is faster than the packed GEMM. Measured on a
    /// 2-core AVX-512 AMD EPYC (2048×2048 and 4096×1024, bf16 and f32): at m = 64 the skinny path takes ~2 ms
    /// against the GEMM's ~3.5 ms, at m = 256 ~13 ms against ~7.5 ms.
    /// </summary>
    internal const int SkinnyMaxRows = 64;

    public static void Run(float* x, int m, int k, void* w, DType wType, int n, float* y, float* bias = null)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(m);
        ArgumentOutOfRangeException.ThrowIfNegative(k);
        ArgumentOutOfRangeException.ThrowIfNegative(n);
        if (wType is not (DType.F32 or DType.F16 or DType.BF16))
        {
            throw new ArgumentOutOfRangeException(nameof(wType), wType, null);
        }

        if (m == 0 || n == 0)
        {
            return;
        }

        if (m <= GemvMaxRows || !SkinnyIsAccelerated)
        {
            Gemv(x, m, k, w, wType, n, y, bias);
        }
        else if (m <= SkinnyMaxRows)
        {
            SkinnyGemm(x, m, k, w, wType, n, y, bias);
        }
        else
        {
            Gemm(x, m, k, w, wType, n, y, bias);
        }
    }

    /// <summary>The plain definition, one dot product per output, fp32 accumulation in k order.</summary>
    public static void RunReference(float* x, int m, int k, void* w, DType wType, int n, float* y, float* bias = null)
    {
        for (int i = 0; i < m; i++)
        {
            for (int j = 0; j < n; j++)
            {
                float sum = 0;
                for (int p = 0; p < k; p++)
                {
                    sum += x[(long)i * k + p] * WeightAt(w, wType, (long)j * k + p);
                }

                y[(long)i * n + j] = bias == null ? sum : sum + bias[j];
            }
        }
    }

    private static float WeightAt(void* w, DType wType, long index) => wType switch
    {
        DType.F32 => ((float*)w)[index],
        DType.F16 => (float)((Half*)w)[index],
        DType.BF16 => Conversions.BF16ToF32(((ushort*)w)[index]),
        _ => throw new ArgumentOutOfRangeException(nameof(wType), wType, null),
    };

    /// <summary>
    /// Matrix-vector path: W streamed once, split over cores by output columns. Each weight row is
    /// read from memory once and dotted with all m rows of x while it is in L1.
    /// </summary>
    private static void Gemv(float* x, int m, int k, void* w, DType wType, int n, float* y, float* bias)
    {
        long bytes = (long)n * k * wType.ByteSize();
        // 256 KiB of weights per chunk: enough to hide the task start, small enough to balance cores.
        var loop = new GemvLoop
        {
            Args = new MatMulArgs(x, m, k, w, wType, n, y, bias),
            Chunks = KernelScheduling.ChunkCount(bytes, 256 * 1024, n),
        };
        KernelScheduling.For(loop.Chunks, ref loop);
    }

    /// <summary>The operands of one matrix product y[m, n] = x[m, k]·W[n, k]ᵀ (+ bias), as a parallel loop carries them.</summary>
    private readonly struct MatMulArgs(float* x, int m, int k, void* w, DType wType, int n, float* y, float* bias)
    {
        public readonly float* X = x, Y = y, Bias = bias;
        public readonly void* W = w;
        public readonly int M = m, K = k, N = n;
        public readonly DType WType = wType;
    }

    private struct GemvLoop : IChunkLoop
    {
        public MatMulArgs Args;
        public int Chunks;

        public readonly void Run(int chunk)
        {
            float* x = Args.X, y = Args.Y, bias = Args.Bias;
            void* w = Args.W;
            int m = Args.M, k = Args.K, n = Args.N;
            DType wType = Args.WType;
            var (start, end) = KernelScheduling.Range(chunk, Chunks, n);
            int elementSize = wType.ByteSize();
            // F16 (and BF16 without 256-bit SIMD) is widened into a row buffer first, then dotted.
            bool fused = wType == DType.F32 || (wType == DType.BF16 && (Vector512.IsHardwareAccelerated || Vector256.IsHardwareAccelerated));
            float* row = fused ? null : ThreadScratch.Floats(k);
            for (int j = start; j < end; j++)
            {
                byte* wRow = (byte*)w + (long)j * k * elementSize;
                if (!fused)
                {
                    Conversions.ToF32(wRow, wType, row, k);
                }

                for (int i = 0; i < m; i++)
                {
                    float* xRow = x + (long)i * k;
                    float dot = fused && wType == DType.BF16
                        ? DotBF16(xRow, (ushort*)wRow, k)
                        : TensorPrimitives.Dot(new ReadOnlySpan<float>(xRow, k), new ReadOnlySpan<float>(fused ? (float*)wRow : row, k));
                    y[(long)i * n + j] = bias == null ? dot : dot + bias[j];
                }
            }
        }
    }

    /// <summary>fp32 · bf16 dot product with the widening fused into the loop (two 32-lane halves per step).</summary>
    internal static float DotBF16(float* x, ushort* w, int k)
    {
        int p = 0;
        float sum = 0;
        if (Vector512.IsHardwareAccelerated)
        {
            // Four accumulators cover the FMA latency (4 cycles) at one FMA per cycle per port.
            Vector512<float> acc0 = default, acc1 = default, acc2 = default, acc3 = default;
            for (; p <= k - 64; p += 64)
            {
                Conversions.WidenBF16(Vector512.Load(w + p), out var w0, out var w1);
                Conversions.WidenBF16(Vector512.Load(w + p + 32), out var w2, out var w3);
                acc0 = Vector512.FusedMultiplyAdd(Vector512.Load(x + p), w0, acc0);
                acc1 = Vector512.FusedMultiplyAdd(Vector512.Load(x + p + 16), w1, acc1);
                acc2 = Vector512.FusedMultiplyAdd(Vector512.Load(x + p + 32), w2, acc2);
                acc3 = Vector512.FusedMultiplyAdd(Vector512.Load(x + p + 48), w3, acc3);
            }

            for (; p <= k - 32; p += 32)
            {
                Conversions.WidenBF16(Vector512.Load(w + p), out var w0, out var w1);
                acc0 = Vector512.FusedMultiplyAdd(Vector512.Load(x + p), w0, acc0);
                acc1 = Vector512.FusedMultiplyAdd(Vector512.Load(x + p + 16), w1, acc1);
            }

            sum = Vector512.Sum((acc0 + acc1) + (acc2 + acc3));
        }
        else if (Vector256.IsHardwareAccelerated)
        {
            Vector256<float> acc0 = default, acc1 = default, acc2 = default, acc3 = default;
            for (; p <= k - 32; p += 32)
            {
                Conversions.WidenBF16(Vector256.Load(w + p), out var w0, out var w1);
                Conversions.WidenBF16(Vector256.Load(w + p + 16), out var w2, out var w3);
                acc0 = Vector256.FusedMultiplyAdd(Vector256.Load(x + p), w0, acc0);
                acc1 = Vector256.FusedMultiplyAdd(Vector256.Load(x + p + 8), w1, acc1);
                acc2 = Vector256.FusedMultiplyAdd(Vector256.Load(x + p + 16), w2, acc2);
                acc3 = Vector256.FusedMultiplyAdd(Vector256.Load(x + p + 24), w3, acc3);
            }

            sum = Vector256.Sum((acc0 + acc1) + (acc2 + acc3));
        }

        for (; p < k; p++)
        {
            sum += x[p] * Conversions.BF16ToF32(w[p]);
        }

        return sum;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void InitializeOutput(float* y, int ldy, int rows, int cols, float* bias)
    {
        for (int i = 0; i < rows; i++)
        {
            var dst = new Span<float>(y + (long)i * ldy, cols);
            if (bias == null)
            {
                dst.Clear();
            }
            else
            {
                new ReadOnlySpan<float>(bias, cols).CopyTo(dst);
            }
        }
    }
}
