using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace Celer.Backends.Cpu.Kernels;

/// <summary>
/// The gated MLP activation: out = silu(gate) · up with silu(x) = x / (1 + exp(-x)), the form torch's
/// SiLU kernel evaluates.
/// </summary>
public static unsafe class Activation
{
    /// <summary>Elements per task: exp makes this ~10x costlier per element than a copy.</summary>
    private const long MinElementsPerTask = 16 * 1024;

    /// <summary>Separate gate and up tensors, both [rows, d], into output [rows, d].</summary>
    public static void SiluMul(float* gate, float* up, float* output, int rows, int d)
        => SiluMul(gate, up, d, output, rows, d);

    /// <summary>A fused gate/up projection [rows, 2·d] (gate then up in each row) into output [rows, d].</summary>
    public static void SiluMulFused(float* gateUp, float* output, int rows, int d)
        => SiluMul(gateUp, gateUp + d, 2 * d, output, rows, d);

    /// <summary>Scalar definition; gate and up rows are <paramref name="inputStride"/> apart.</summary>
    public static void SiluMulReference(float* gate, float* up, int inputStride, float* output, int rows, int d)
    {
        for (int r = 0; r < rows; r++)
        {
            for (int i = 0; i < d; i++)
            {
                float g = gate[((long)r * inputStride) + i];
                output[((long)r * d) + i] = g / (1f + MathF.Exp(-g)) * up[((long)r * inputStride) + i];
            }
        }
    }

    private static void SiluMul(float* gate, float* up, int inputStride, float* output, int rows, int d)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(rows);
        ArgumentOutOfRangeException.ThrowIfNegative(d);
        if (rows == 0 || d == 0)
        {
            return;
        }

        var loop = new SiluMulLoop
        {
            Gate = gate, Up = up, InputStride = inputStride, Output = output, Rows = rows, D = d,
            Chunks = KernelScheduling.ChunkCount((long)rows * d, MinElementsPerTask, rows),
        };
        KernelScheduling.For(loop.Chunks, ref loop);
    }

    private struct SiluMulLoop : IChunkLoop
    {
        public float* Gate, Up, Output;
        public int InputStride, Rows, D, Chunks;

        public readonly void Run(int chunk)
        {
            var (start, end) = KernelScheduling.Range(chunk, Chunks, Rows);
            for (int r = start; r < end; r++)
            {
                SiluMulRow(Gate + ((long)r * InputStride), Up + ((long)r * InputStride), Output + ((long)r * D), D);
            }
        }
    }

    private static void SiluMulRow(float* gate, float* up, float* output, int d)
    {
        int i = 0;
        if (Vector512.IsHardwareAccelerated)
        {
            for (; i <= d - Vector512<float>.Count; i += Vector512<float>.Count)
            {
                var g = Vector512.Load(gate + i);
                (g / (Vector512<float>.One + Vector512.Exp(-g)) * Vector512.Load(up + i)).Store(output + i);
            }
        }
        else if (Vector256.IsHardwareAccelerated)
        {
            for (; i <= d - Vector256<float>.Count; i += Vector256<float>.Count)
            {
                var g = Vector256.Load(gate + i);
                (g / (Vector256<float>.One + Vector256.Exp(-g)) * Vector256.Load(up + i)).Store(output + i);
            }
        }
        else if (Vector128.IsHardwareAccelerated)
        {
            for (; i <= d - Vector128<float>.Count; i += Vector128<float>.Count)
            {
                var g = Vector128.Load(gate + i);
                (g / (Vector128<float>.One + Vector128.Exp(-g)) * Vector128.Load(up + i)).Store(output + i);
            }
        }

        for (; i < d; i++)
        {
            output[i] = Silu(gate[i]) * up[i];
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static float Silu(float x) => x / (1f + MathF.Exp(-x));
}
