using System.Numerics.Tensors;
using Celer.Models.Weights;

namespace Celer.Backends.Cpu.Kernels;

/// <summary>
/// RMS normalization over rows of length d, as transformers' <c>LlamaRMSNorm</c> computes it:
/// y = x · rsqrt(mean(x²) + eps) · w, the variance in fp32 and the weight applied last. The weight is
/// read in its checkpoint dtype; a null weight means w = 1 (used for weightless norms).
/// </summary>
public static unsafe class RmsNorm
{
    /// <summary>Elements per task: below ~64K floats a row loop finishes in microseconds.</summary>
    private const long MinElementsPerTask = 64 * 1024;

    /// <summary>output[r] = norm(x[r]) · w for each of <paramref name="rows"/> rows; output may be x.</summary>
    public static void Run(float* x, float* output, void* weight, DType weightType, float eps, int rows, int d)
        => NormalizeRows(x, null, output, weight, weightType, eps, rows, d);

    /// <summary>
    /// The fused residual step of every decoder layer (vLLM's <c>fused_add_rms_norm</c>):
    /// residual += x, then x = norm(residual) · w, both in place.
    /// </summary>
    public static void AddAndNorm(float* x, float* residual, void* weight, DType weightType, float eps, int rows, int d)
        => NormalizeRows(x, residual, x, weight, weightType, eps, rows, d);

    /// <summary>
    /// OLMo-2's norm in place over columns [offset, offset + d) of each row (rows <paramref name="stride"/> apart):
    /// w · (x · rsqrt(mean(x²) + eps)). In fp32 the order of the two products does not round differently.
    /// </summary>
    public static void NormalizeSlice(float* x, int rows, int stride, int offset, void* weight, DType weightType, float eps, int d)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(rows);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(offset + d, stride);
        var loop = new SliceLoop
        {
            X = x + offset, Stride = stride, Weight = weight, WeightType = weightType, Eps = eps, Rows = rows, D = d,
            Chunks = KernelScheduling.ChunkCount((long)rows * d, MinElementsPerTask, rows),
        };
        KernelScheduling.For(loop.Chunks, ref loop);
    }

    private struct SliceLoop : IChunkLoop
    {
        public float* X;
        public void* Weight;
        public DType WeightType;
        public float Eps;
        public int Stride, Rows, D, Chunks;

        public readonly void Run(int chunk)
        {
            var (start, end) = KernelScheduling.Range(chunk, Chunks, Rows);
            float* w = WidenWeight(Weight, WeightType, D);
            for (int r = start; r < end; r++)
            {
                NormalizeRow(X + ((long)r * Stride), X + ((long)r * Stride), w, Eps, D);
            }
        }
    }

    /// <summary>
    /// Gemma's norm (Gemma2RMSNorm, Gemma3RMSNorm): output[r] = x[r] · rsqrt(mean(x²) + eps) · (1 + w), with 1 + w formed
    /// in fp32 from the widened weight as transformers does (<c>1.0 + weight.float()</c>); output may be x.
    /// </summary>
    public static void RunGemma(float* x, float* output, void* weight, DType weightType, float eps, int rows, int d) =>
        RunGemmaRows(new GemmaLoop { X = x, Output = output, NextWeight = weight, NextType = weightType, Eps = eps, Rows = rows, D = d });

    /// <summary>
    /// Gemma's residual step, in place: x = gemmaNorm(x)·(1 + postWeight) (a sublayer output's own norm);
    /// residual += x; x = gemmaNorm(residual)·(1 + nextWeight) (the next sublayer's input norm).
    /// </summary>
    public static void GemmaAddAndNorm(
        float* x, float* residual, void* postWeight, DType postType, void* nextWeight, DType nextType, float eps, int rows, int d) =>
        RunGemmaRows(new GemmaLoop
        {
            X = x, Residual = residual, Output = x, PostWeight = postWeight, PostType = postType, NextWeight = nextWeight, NextType = nextType,
            Eps = eps, Rows = rows, D = d,
        });

    /// <summary>Checks the shape and runs <paramref name="loop"/>'s rows in chunks on the worker team.</summary>
    private static void RunGemmaRows(GemmaLoop loop)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(loop.Rows);
        ArgumentOutOfRangeException.ThrowIfNegative(loop.D);
        if (loop.Rows == 0 || loop.D == 0)
        {
            return;
        }

        loop.Chunks = KernelScheduling.ChunkCount((long)loop.Rows * loop.D, MinElementsPerTask, loop.Rows);
        KernelScheduling.For(loop.Chunks, ref loop);
    }

    private struct GemmaLoop : IChunkLoop
    {
        public float* X, Residual, Output;
        public void* PostWeight, NextWeight;
        public DType PostType, NextType;
        public float Eps;
        public int Rows, D, Chunks;

        public readonly void Run(int chunk)
        {
            var (start, end) = KernelScheduling.Range(chunk, Chunks, Rows);
            float* weights = ThreadScratch.Floats(2 * D);
            float* next = GemmaWeight(NextWeight, NextType, weights, D);
            float* post = Residual != null ? GemmaWeight(PostWeight, PostType, weights + D, D) : null;
            for (int r = start; r < end; r++)
            {
                float* source = X + ((long)r * D);
                if (Residual != null)
                {
                    NormalizeRow(source, source, post, Eps, D);
                    var residualRow = new Span<float>(Residual + ((long)r * D), D);
                    TensorPrimitives.Add(residualRow, new ReadOnlySpan<float>(source, D), residualRow);
                    source = Residual + ((long)r * D);
                }

                NormalizeRow(source, Output + ((long)r * D), next, Eps, D);
            }
        }
    }

    /// <summary>1 + w in fp32 into <paramref name="destination"/> (Gemma's weight is stored as an offset from 1).</summary>
    private static float* GemmaWeight(void* weight, DType weightType, float* destination, int d)
    {
        Conversions.ToF32(weight, weightType, destination, d);
        var span = new Span<float>(destination, d);
        TensorPrimitives.Add(span, 1f, span);
        return destination;
    }

    /// <summary>Scalar definition of <see cref="RunGemma"/>: <see cref="RunReference"/> with the weight taken as 1 + w.</summary>
    public static void RunGemmaReference(float* x, float* output, void* weight, DType weightType, float eps, int rows, int d) =>
        RunReference(x, output, weight, weightType, eps, rows, d, weightOffset: 1f);

    /// <summary>Scalar definition of <see cref="GemmaAddAndNorm"/>.</summary>
    public static void GemmaAddAndNormReference(
        float* x, float* residual, void* postWeight, DType postType, void* nextWeight, DType nextType, float eps, int rows, int d)
    {
        RunGemmaReference(x, x, postWeight, postType, eps, rows, d);
        for (long i = 0; i < (long)rows * d; i++)
        {
            residual[i] += x[i];
        }

        RunGemmaReference(residual, x, nextWeight, nextType, eps, rows, d);
    }

    /// <summary>
    /// The row loop of <see cref="Run"/> and <see cref="AddAndNorm"/>: with a <paramref name="residual"/>, each row
    /// first adds x into it and normalizes the sum; without one, it normalizes x.
    /// </summary>
    private static void NormalizeRows(float* x, float* residual, float* output, void* weight, DType weightType, float eps, int rows, int d)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(rows);
        ArgumentOutOfRangeException.ThrowIfNegative(d);
        if (rows == 0 || d == 0)
        {
            return;
        }

        var loop = new NormalizeLoop
        {
            X = x, Residual = residual, Output = output, Weight = weight, WeightType = weightType, Eps = eps, Rows = rows, D = d,
            Chunks = KernelScheduling.ChunkCount((long)rows * d, MinElementsPerTask, rows),
        };
        KernelScheduling.For(loop.Chunks, ref loop);
    }

    private struct NormalizeLoop : IChunkLoop
    {
        public float* X, Residual, Output;
        public void* Weight;
        public DType WeightType;
        public float Eps;
        public int Rows, D, Chunks;

        public readonly void Run(int chunk)
        {
            var (start, end) = KernelScheduling.Range(chunk, Chunks, Rows);
            float* w = WidenWeight(Weight, WeightType, D);
            for (int r = start; r < end; r++)
            {
                float* source = X + ((long)r * D);
                if (Residual != null)
                {
                    var residualRow = new Span<float>(Residual + ((long)r * D), D);
                    TensorPrimitives.Add(residualRow, new ReadOnlySpan<float>(source, D), residualRow);
                    source = Residual + ((long)r * D);
                }

                NormalizeRow(source, Output + ((long)r * D), w, Eps, D);
            }
        }
    }

    /// <summary>Scalar definition of <see cref="Run"/>; Gemma's norm multiplies by <paramref name="weightOffset"/> + w (1 + w).</summary>
    public static void RunReference(float* x, float* output, void* weight, DType weightType, float eps, int rows, int d, float weightOffset = 0f)
    {
        for (int r = 0; r < rows; r++)
        {
            float* row = x + ((long)r * d);
            float sumOfSquares = 0;
            for (int i = 0; i < d; i++)
            {
                sumOfSquares += row[i] * row[i];
            }

            float inverseRms = 1f / MathF.Sqrt((sumOfSquares / d) + eps);
            for (int i = 0; i < d; i++)
            {
                float normalized = row[i] * inverseRms;
                output[((long)r * d) + i] = weight == null ? normalized : normalized * (weightOffset + WeightAt(weight, weightType, i));
            }
        }
    }

    /// <summary>Scalar definition of <see cref="AddAndNorm"/>.</summary>
    public static void AddAndNormReference(float* x, float* residual, void* weight, DType weightType, float eps, int rows, int d)
    {
        for (long i = 0; i < (long)rows * d; i++)
        {
            residual[i] += x[i];
        }

        RunReference(residual, x, weight, weightType, eps, rows, d);
    }

    private static void NormalizeRow(float* x, float* output, float* w, float eps, int d)
    {
        var row = new ReadOnlySpan<float>(x, d);
        var dst = new Span<float>(output, d);
        float inverseRms = 1f / MathF.Sqrt((TensorPrimitives.SumOfSquares(row) / d) + eps);
        TensorPrimitives.Multiply(row, inverseRms, dst);
        if (w != null)
        {
            TensorPrimitives.Multiply(dst, new ReadOnlySpan<float>(w, d), dst);
        }
    }

    /// <summary>The weight as fp32: the pointer itself for F32, else widened into this thread's scratch.</summary>
    private static float* WidenWeight(void* weight, DType weightType, int d)
    {
        if (weight == null || weightType == DType.F32)
        {
            return (float*)weight;
        }

        float* widened = ThreadScratch.Floats(d);
        Conversions.ToF32(weight, weightType, widened, d);
        return widened;
    }

    private static float WeightAt(void* weight, DType weightType, int i) => weightType switch
    {
        DType.F32 => ((float*)weight)[i],
        DType.F16 => (float)((Half*)weight)[i],
        DType.BF16 => Conversions.BF16ToF32(((ushort*)weight)[i]),
        _ => throw new ArgumentOutOfRangeException(nameof(weightType), weightType, null),
    };
}
