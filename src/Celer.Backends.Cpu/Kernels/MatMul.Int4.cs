using System.Numerics.Tensors;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using Celer.Models.Weights;

namespace Celer.Backends.Cpu.Kernels;

/// <summary>
/// The linear layer of a 4-bit weight-only checkpoint with the weight kept packed (an eighth of fp32's bytes): codes 8
/// per 32-bit word along k (nibble i of word q is column 8q + i, <c>IntWeights.PackCodes</c>), a (scale, zero point) pair
/// per row and group of <c>groupSize</c> columns, the input already in the weight's column order. Each weight row is
/// dequantized, (code − zero) · scale exactly in fp32, into a row buffer and dotted with the x rows while it is in L1
/// (decode, up to <see cref="GemvMaxRows"/> rows); more rows dequantize the whole weight into a scratch matrix once and
/// run the fp32 GEMM paths on it.
/// </summary>
public static unsafe partial class MatMul
{
    public static void RunInt4(float* x, int m, int k, uint* codes, float* scalesAndZeros, int groups, int groupSize, int n, float* y, float* bias, float* scratch)
    {
        if (m == 0 || n == 0)
        {
            return;
        }

        var args = new Int4Args(x, m, k, codes, scalesAndZeros, groups, groupSize, n, y, bias, scratch);
        var loop = new Int4Loop { Args = args, Chunks = KernelScheduling.ChunkCount((long)n * k / 2, 64 * 1024, n) };
        KernelScheduling.For(loop.Chunks, ref loop);
        if (m > GemvMaxRows)
        {
            Run(x, m, k, scratch, DType.F32, n, y, bias);
        }
    }

    /// <summary>Row <paramref name="row"/>[0, k) of the weight: (code − zero) · scale, eight codes per word, AVX2 where present.</summary>
    internal static void DequantizeInt4Row(uint* codes, float* scalesAndZeros, int groupSize, int k, float* row)
    {
        int words = k / 8, q = 0;
        if (Avx2.IsSupported)
        {
            Vector256<uint> shifts = Vector256.Create(0u, 4, 8, 12, 16, 20, 24, 28), mask = Vector256.Create(15u);
            for (; q < words; q++)
            {
                float* sz = scalesAndZeros + (2 * (q * 8 / groupSize));
                Vector256<int> nibbles = Avx2.ShiftRightLogicalVariable(Vector256.Create(codes[q]), shifts).AsInt32() & mask.AsInt32();
                Vector256<float> w = (Vector256.ConvertToSingle(nibbles) - Vector256.Create(sz[1])) * Vector256.Create(sz[0]);
                w.Store(row + (q * 8));
            }
        }

        DequantizeInt4Words(codes, scalesAndZeros, groupSize, q, words, row);
    }

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

    private readonly struct Int4Args(float* x, int m, int k, uint* codes, float* scalesAndZeros, int groups, int groupSize, int n, float* y, float* bias, float* scratch)
    {
        public readonly float* X = x, ScalesAndZeros = scalesAndZeros, Y = y, Bias = bias, Scratch = scratch;
        public readonly uint* Codes = codes;
        public readonly int M = m, K = k, Groups = groups, GroupSize = groupSize, N = n;
    }

    /// <summary>Output rows in chunks: each row dequantized, then dotted with every x row (GEMV) or kept in the scratch (GEMM).</summary>
    private struct Int4Loop : IChunkLoop
    {
        public Int4Args Args;
        public int Chunks;

        public readonly void Run(int chunk)
        {
            int m = Args.M, k = Args.K, n = Args.N;
            bool gemv = m <= GemvMaxRows;
            var (start, end) = KernelScheduling.Range(chunk, Chunks, n);
            float* buffer = gemv ? ThreadScratch.Floats(k) : null;
            for (int j = start; j < end; j++)
            {
                float* row = gemv ? buffer : Args.Scratch + ((long)j * k);
                DequantizeInt4Row(Args.Codes + ((long)j * (k / 8)), Args.ScalesAndZeros + ((long)j * Args.Groups * 2), Args.GroupSize, k, row);
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
