using Celer.Models.Quantization;

namespace Celer.TestSupport;

/// <summary>Random integer-quantized weights for the kernels' tests, and their exact dequantization.</summary>
public static class RandomIntWeights
{
    /// <summary>
    /// Codes, zero points (up to 2^bits inclusive, as GPTQ's "minus one" format can read them) and scales (multiples of
    /// 1/4096 up to 1/16: exact in 16 bits, outputs of order one) of a [rows, columns] weight.
    /// </summary>
    public static IntWeights Create(Random random, int rows, int columns, int bits, int groupSize, int[]? groupIndex)
    {
        int groups = groupSize == 0 ? 1 : (columns + groupSize - 1) / groupSize;
        return new IntWeights
        {
            Rows = rows,
            Columns = columns,
            Bits = bits,
            Codes = [.. Enumerable.Range(0, rows * columns).Select(_ => (byte)random.Next(1 << bits))],
            Groups = groups,
            Zeros = [.. Enumerable.Range(0, rows * groups).Select(_ => random.Next((1 << bits) + 1))],
            Scales = [.. Enumerable.Range(0, rows * groups).Select(_ => (1 + random.Next(256)) / 4096f)],
            GroupSize = groupSize,
            GroupIndex = groupIndex,
        };
    }

    /// <summary>Groups of <paramref name="groupSize"/> over a random permutation of the columns, as GPTQ's desc_act stores them.</summary>
    public static int[] ActOrder(Random random, int columns, int groupSize)
    {
        int[] permutation = [.. Enumerable.Range(0, columns).OrderBy(_ => random.Next())];
        var index = new int[columns];
        for (int j = 0; j < columns; j++)
        {
            index[permutation[j]] = j / groupSize;
        }

        return index;
    }

    public static unsafe float[] Dequantize(IntWeights w)
    {
        var values = new float[w.Rows * w.Columns];
        fixed (float* p = values)
        {
            w.Dequantize(p);
        }

        return values;
    }
}
