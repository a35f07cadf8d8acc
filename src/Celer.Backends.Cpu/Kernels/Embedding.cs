using Celer.Models.Weights;

namespace Celer.Backends.Cpu.Kernels;

/// <summary>Token embedding lookup: rows of the (F32/F16/BF16) table [vocabSize, hiddenSize] widened to fp32.</summary>
public static unsafe class Embedding
{
    /// <summary>output[t] = table[ids[t]] for each token; an id outside [0, vocabSize) throws before anything is written.</summary>
    public static void Gather(int* ids, int numTokens, void* table, DType tableType, int vocabSize, int hiddenSize, float* output)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(numTokens);
        ArgumentOutOfRangeException.ThrowIfNegative(hiddenSize);
        for (int t = 0; t < numTokens; t++)
        {
            if ((uint)ids[t] >= (uint)vocabSize)
            {
                throw new ArgumentOutOfRangeException(nameof(ids), ids[t], $"Token id must be in [0, {vocabSize}).");
            }
        }

        long rowBytes = (long)hiddenSize * tableType.ByteSize();
        for (int t = 0; t < numTokens; t++)
        {
            Conversions.ToF32((byte*)table + (ids[t] * rowBytes), tableType, output + ((long)t * hiddenSize), hiddenSize);
        }
    }
}
