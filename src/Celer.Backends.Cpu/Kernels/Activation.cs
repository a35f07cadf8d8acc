using Celer.Models.Backend;
using System.Numerics.Tensors;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace Celer.Backends.Cpu.Kernels;

/// <summary>
/// The gated MLP activations: out = silu(gate) · up with silu(x) = x / (1 + exp(-x)), the form torch's
/// SiLU kernel evaluates; and Gemma's GeGLU, out = gelu_tanh(gate) · up.
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

    /// <summary>
    /// gpt-oss's clamped SwiGLU over fused [rows, 2·d] gate-then-up rows: g = min(gate, limit), u = clamp(up, ±limit),
    /// out = (u + 1) · g · sigmoid(α · g), as its modeling code computes it (after de-interleaving its fused projection).
    /// </summary>
    public static void ClampedSwiGlu(float* gateUp, float* output, int rows, int d, float limit, float alpha)
    {
        for (int r = 0; r < rows; r++)
        {
            float* gate = gateUp + ((long)r * 2 * d), up = gate + d, o = output + ((long)r * d);
            for (int i = 0; i < d; i++)
            {
                float g = MathF.Min(gate[i], limit), u = Math.Clamp(up[i], -limit, limit);
                o[i] = (u + 1f) * (g / (1f + MathF.Exp(-alpha * g)));
            }
        }
    }

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

    /// <summary>√(2/π) as torch's GELU kernel forms it (<c>M_SQRT2 * M_2_SQRTPI * 0.5</c>), and the cubic's coefficient.</summary>
    private static readonly float GeluBeta = (float)(Math.Sqrt(2) * (2 / Math.Sqrt(Math.PI)) * 0.5);
    private const float GeluKappa = 0.044715f;

    /// <summary>
    /// A fused gate/up projection [rows, 2·d] into output [rows, d]: gelu_tanh(gate) · up, with torch's tanh
    /// approximation 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³))).
    /// </summary>
    public static void GeluTanhMulFused(float* gateUp, float* output, int rows, int d)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(rows);
        ArgumentOutOfRangeException.ThrowIfNegative(d);
        if (rows == 0 || d == 0)
        {
            return;
        }

        var loop = new GeluTanhMulLoop
        {
            GateUp = gateUp, Output = output, Rows = rows, D = d,
            Chunks = KernelScheduling.ChunkCount((long)rows * d, MinElementsPerTask, rows),
        };
        KernelScheduling.For(loop.Chunks, ref loop);
    }

    /// <summary>Scalar definition of <see cref="GeluTanhMulFused"/>.</summary>
    public static void GeluTanhMulReference(float* gateUp, float* output, int rows, int d)
    {
        for (int r = 0; r < rows; r++)
        {
            for (int i = 0; i < d; i++)
            {
                float g = gateUp[((long)r * 2 * d) + i];
                float gelu = 0.5f * g * (1f + MathF.Tanh(GeluBeta * (g + (GeluKappa * (g * g * g)))));
                output[((long)r * d) + i] = gelu * gateUp[((long)r * 2 * d) + d + i];
            }
        }
    }

    private struct GeluTanhMulLoop : IChunkLoop
    {
        public float* GateUp, Output;
        public int Rows, D, Chunks;

        public readonly void Run(int chunk)
        {
            var (start, end) = KernelScheduling.Range(chunk, Chunks, Rows);
            for (int r = start; r < end; r++)
            {
                float* gate = GateUp + ((long)r * 2 * D);
                GeluTanhMulRow(gate, gate + D, Output + ((long)r * D), D);
            }
        }
    }

    /// <summary>One row, built up in the output row with TensorPrimitives (vectorized tanh); ×0.5 is exact, so its place does not round.</summary>
    private static void GeluTanhMulRow(float* gate, float* up, float* output, int d)
    {
        var g = new ReadOnlySpan<float>(gate, d);
        var o = new Span<float>(output, d);
        TensorPrimitives.Multiply(g, g, o);
        TensorPrimitives.Multiply(o, g, o);               // x³
        TensorPrimitives.Multiply(o, GeluKappa, o);
        TensorPrimitives.Add(o, g, o);                    // x + κx³
        TensorPrimitives.Multiply(o, GeluBeta, o);
        TensorPrimitives.Tanh(o, o);
        TensorPrimitives.Add(o, 1f, o);
        TensorPrimitives.Multiply(o, g, o);
        TensorPrimitives.Multiply(o, 0.5f, o);            // gelu(x)
        TensorPrimitives.Multiply(o, new ReadOnlySpan<float>(up, d), o);
    }

    /// <summary>
    /// x = gelu(x) in place over <paramref name="count"/> values: torch's exact form 0.5·x·(1 + erf(x/√2)) (BERT's
    /// <c>hidden_act</c> "gelu"), the tanh form of <see cref="GeluTanhMulFused"/>, or CLIP's quick_gelu x·sigmoid(1.702·x)
    /// (transformers' QuickGELUActivation, in fp32 as torch evaluates it).
    /// </summary>
    public static void Gelu(float* x, long count, GeluForm form)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(count);
        var loop = new GeluLoop
        {
            X = x, Count = count, Form = form,
            Chunks = KernelScheduling.ChunkCount(count, MinElementsPerTask, Math.Max(1, count / 4096)),
        };
        KernelScheduling.For(loop.Chunks, ref loop);
    }

    private struct GeluLoop : IChunkLoop
    {
        public float* X;
        public long Count;
        public GeluForm Form;
        public int Chunks;

        public readonly void Run(int chunk)
        {
            long start = Count * chunk / Chunks, end = Count * (chunk + 1) / Chunks;
            for (long i = start; i < end; i++)
            {
                float v = X[i];
                X[i] = Form switch
                {
                    GeluForm.Tanh => 0.5f * v * (1f + MathF.Tanh(GeluBeta * (v + (GeluKappa * (v * v * v))))),
                    GeluForm.Quick => v / (1f + MathF.Exp(-1.702f * v)),
                    _ => (float)(0.5 * v * (1 + Erf(v / Math.Sqrt(2)))),
                };
            }
        }
    }

    /// <summary>
    /// The error function to double precision (.NET has none): its Maclaurin series below |x| = 2, where the terms
    /// stay small enough not to cancel; above, 1 − erfc(x) with erfc from its continued fraction (Abramowitz and Stegun
    /// 7.1.14), evaluated from the tail, which converges fast there.
    /// </summary>
    internal static double Erf(double x)
    {
        double a = Math.Abs(x);
        if (a < 2)
        {
            double term = a, sum = a, square = a * a;
            for (int n = 1; n < 60; n++)
            {
                term *= -square / n;
                double next = term / (2 * n + 1);
                sum += next;
                if (Math.Abs(next) < 1e-17 * Math.Abs(sum))
                {
                    break;
                }
            }

            return Math.CopySign(sum * 2 / Math.Sqrt(Math.PI), x);
        }

        double fraction = a;
        for (int k = 120; k >= 1; k--)
        {
            fraction = a + k / 2.0 / fraction;
        }

        double erfc = Math.Exp(-a * a) / Math.Sqrt(Math.PI) / fraction;
        return Math.CopySign(1 - erfc, x);
    }
}
