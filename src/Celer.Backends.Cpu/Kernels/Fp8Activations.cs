using Celer.Models.Quantization;
using Celer.Models.Weights;

namespace Celer.Backends.Cpu.Kernels;

/// <summary>
/// The input side of an FP8 W8A8 matmul on the CPU: each value replaced by what the E4M3 code it quantizes to stands
/// for, code(x / s) · s, with the scale s of the layer's scheme (<see cref="ActivationScaling"/>). A matmul of these
/// values with the dequantized weights is the W8A8 product s_x · s_w · (x_q · W_q) up to fp32 summation order, so the CPU
/// computes what a checkpoint's FP8 kernels compute; the scales follow vLLM's quantization kernels.
/// </summary>
public static unsafe class Fp8Activations
{
    /// <summary>dst[r, c] = code(x[r, c] / s) · s for <paramref name="rows"/> rows of <paramref name="columns"/>.</summary>
    public static void Quantize(float* x, int rows, int columns, ActivationQuantization q, float* dst)
    {
        for (int r = 0; r < rows; r++)
        {
            float* src = x + ((long)r * columns), output = dst + ((long)r * columns);
            switch (q.Scaling)
            {
                case ActivationScaling.StaticPerTensor:
                    Run(src, columns, q.StaticScale, output);
                    break;
                case ActivationScaling.DynamicPerToken:
                    Run(src, columns, MathF.Max(AbsMax(src, columns) / ActivationQuantization.Fp8Max, ActivationQuantization.MinTokenScale), output);
                    break;
                default:
                    for (int c = 0; c < columns; c += q.GroupSize)
                    {
                        int n = Math.Min(q.GroupSize, columns - c);
                        Run(src + c, n, MathF.Max(AbsMax(src + c, n), ActivationQuantization.MinGroupAbsMax) / ActivationQuantization.Fp8Max, output + c);
                    }

                    break;
            }
        }
    }

    private static float AbsMax(float* x, int count)
    {
        float max = 0;
        for (int i = 0; i < count; i++)
        {
            max = MathF.Max(max, MathF.Abs(x[i]));
        }

        return max;
    }

    private static void Run(float* x, int count, float scale, float* dst)
    {
        for (int i = 0; i < count; i++)
        {
            dst[i] = Fp8.Decode(Fp8.Encode(x[i] / scale, DType.F8E4M3), DType.F8E4M3) * scale;
        }
    }
}
