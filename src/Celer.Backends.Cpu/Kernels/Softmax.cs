using System.Numerics.Tensors;

namespace Celer.Backends.Cpu.Kernels;

/// <summary>Row helpers for logprobs: log-softmax over the vocabulary and the top-k of a row.</summary>
public static unsafe class Softmax
{
    /// <summary>Chunk of exp values summed at a time; fits the stack and L1.</summary>
    private const int ExpChunk = 1024;

    /// <summary>
    /// outLogprobs[i] = logits[i] − max − log Σ exp(logits − max), torch's <c>log_softmax</c> in fp32;
    /// the output may be the input.
    /// </summary>
    public static void LogSoftmax(float* logits, int vocab, float* outLogprobs)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(vocab);
        if (vocab == 0)
        {
            return;
        }

        var input = new ReadOnlySpan<float>(logits, vocab);
        var output = new Span<float>(outLogprobs, vocab);
        float max = TensorPrimitives.Max(input);
        TensorPrimitives.Subtract(input, max, output);

        Span<float> exps = stackalloc float[ExpChunk];
        float sum = 0;
        for (int start = 0; start < vocab; start += ExpChunk)
        {
            int count = Math.Min(ExpChunk, vocab - start);
            TensorPrimitives.Exp(output.Slice(start, count), exps[..count]);
            sum += TensorPrimitives.Sum(exps[..count]);
        }

        TensorPrimitives.Subtract(output, MathF.Log(sum), output);
    }

    /// <summary>Scalar definition of <see cref="LogSoftmax"/>.</summary>
    public static void LogSoftmaxReference(float* logits, int vocab, float* outLogprobs)
    {
        float max = float.NegativeInfinity;
        for (int i = 0; i < vocab; i++)
        {
            max = MathF.Max(max, logits[i]);
        }

        float sum = 0;
        for (int i = 0; i < vocab; i++)
        {
            sum += MathF.Exp(logits[i] - max);
        }

        float logSum = MathF.Log(sum);
        for (int i = 0; i < vocab; i++)
        {
            outLogprobs[i] = logits[i] - max - logSum;
        }
    }

    /// <summary>
    /// The <paramref name="k"/> largest values of a row with their indices, largest first; equal values are
    /// ordered by lower index first. k is clamped to the row length; returns the number written.
    /// NaN is not expected in logprobs and is ordered below every number.
    /// </summary>
    public static int TopK(float* values, int count, int k, int* outIndices, float* outValues)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(count);
        ArgumentOutOfRangeException.ThrowIfNegative(k);
        k = Math.Min(k, count);
        if (k == 0)
        {
            return 0;
        }

        // A sorted insertion list of k entries: k is small (logprobs allow at most 20), so one pass over the
        // row with an early reject against the current k-th value beats a heap.
        int filled = 0;
        for (int i = 0; i < count; i++)
        {
            float value = values[i];
            if (float.IsNaN(value) || (filled == k && !(value > outValues[k - 1])))
            {
                // Equal to the k-th value loses: that entry has the lower index.
                continue;
            }

            int position = filled == k ? k - 1 : filled++;
            while (position > 0 && value > outValues[position - 1])
            {
                outValues[position] = outValues[position - 1];
                outIndices[position] = outIndices[position - 1];
                position--;
            }

            outValues[position] = value;
            outIndices[position] = i;
        }

        return filled;
    }
}
