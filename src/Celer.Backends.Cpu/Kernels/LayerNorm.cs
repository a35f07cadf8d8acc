using System.Numerics.Tensors;

namespace Celer.Backends.Cpu.Kernels;

/// <summary>
/// LayerNorm over rows of length d, as torch's <c>layer_norm</c> computes it for an encoder (BERT, RoBERTa):
/// y = (x − mean) / √(var + eps) · w + b with the biased variance. The mean and variance are taken in two passes
/// (the variance of x − mean), so a row with a large common offset keeps its precision. Weight and bias are fp32.
/// </summary>
public static unsafe class LayerNorm
{
    /// <summary>Elements per task: below ~64K floats a row loop finishes in microseconds.</summary>
    private const long MinElementsPerTask = 64 * 1024;

    /// <summary>output[r] = layerNorm(x[r]) for each of <paramref name="rows"/> rows; output may be x.</summary>
    public static void Run(float* x, float* output, float* weight, float* bias, float eps, int rows, int d) =>
        RunRows(new Loop { X = x, Output = output, Weight = weight, Bias = bias, Eps = eps, Rows = rows, D = d });

    /// <summary>A post-norm residual step: residual = layerNorm(x + residual), in place.</summary>
    public static void AddAndNorm(float* x, float* residual, float* weight, float* bias, float eps, int rows, int d) =>
        RunRows(new Loop { X = residual, Add = x, Output = residual, Weight = weight, Bias = bias, Eps = eps, Rows = rows, D = d });

    private static void RunRows(Loop loop)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(loop.Rows);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(loop.D);
        loop.Chunks = KernelScheduling.ChunkCount((long)loop.Rows * loop.D, MinElementsPerTask, loop.Rows);
        KernelScheduling.For(loop.Chunks, ref loop);
    }

    private struct Loop : IChunkLoop
    {
        public float* X, Add, Output, Weight, Bias;
        public float Eps;
        public int Rows, D, Chunks;

        public readonly void Run(int chunk)
        {
            var (start, end) = KernelScheduling.Range(chunk, Chunks, Rows);
            for (int r = start; r < end; r++)
            {
                var row = new Span<float>(X + ((long)r * D), D);
                if (Add != null)
                {
                    TensorPrimitives.Add(row, new ReadOnlySpan<float>(Add + ((long)r * D), D), row);
                }

                NormalizeRow(row, new Span<float>(Output + ((long)r * D), D), new ReadOnlySpan<float>(Weight, D), new ReadOnlySpan<float>(Bias, D), Eps);
            }
        }
    }

    private static void NormalizeRow(ReadOnlySpan<float> x, Span<float> output, ReadOnlySpan<float> weight, ReadOnlySpan<float> bias, float eps)
    {
        // Both statistics in double: a row far from zero (BERT's often are) loses the mean's low bits in an fp32 sum.
        double sum = 0;
        foreach (float v in x)
        {
            sum += v;
        }

        float mean = (float)(sum / x.Length);
        double squares = 0;
        foreach (float v in x)
        {
            double centered = v - (sum / x.Length);
            squares += centered * centered;
        }

        float inverse = 1f / MathF.Sqrt((float)(squares / x.Length) + eps);
        TensorPrimitives.Subtract(x, mean, output);
        TensorPrimitives.Multiply(output, inverse, output);
        TensorPrimitives.FusedMultiplyAdd(output, weight, bias, output);
    }
}
