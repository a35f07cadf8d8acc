using Celer.Models.Weights;

namespace Celer.Models.Quantization;

/// <summary>
/// One integer-quantized [rows = out, columns = in] weight unpacked from its checkpoint layout into one form every format
/// reaches: unsigned codes row-major, zero points and scales per (row, group), and each column's group. weight[o, i] =
/// (<see cref="Codes"/>[o, i] − <see cref="Zeros"/>[o, g]) · <see cref="Scales"/>[o, g] with g = <see cref="GroupOf"/>(i).
/// Zero points are ints, not codes: GPTQ's "minus one" format reads a stored 15 as 16.
/// </summary>
public sealed class IntWeights
{
    public required int Rows { get; init; }

    public required int Columns { get; init; }

    public required int Bits { get; init; }

    /// <summary>[rows × columns], 0 … 2^bits − 1.</summary>
    public required byte[] Codes { get; init; }

    public required int Groups { get; init; }

    /// <summary>[rows × groups].</summary>
    public required int[] Zeros { get; init; }

    /// <summary>[rows × groups], the stored scales in fp32 (exact: they are stored in 16 bits or fp32).</summary>
    public required float[] Scales { get; init; }

    /// <summary>Columns per group (0: one group); unused where <see cref="GroupIndex"/> is stored.</summary>
    public required int GroupSize { get; init; }

    /// <summary>Each column's group as stored (act-order), or null when it is <c>column / GroupSize</c>.</summary>
    public int[]? GroupIndex { get; init; }

    public int GroupOf(int column) => GroupIndex?[column] ?? (GroupSize == 0 ? 0 : column / GroupSize);

    /// <summary>
    /// values[o, i] = (code − zero) · scale in fp32: exact, as the integer difference has at most 9 bits and the scale at
    /// most fp32's 24, so this is the weight every reference dequantizes to. Rows in parallel.
    /// </summary>
    public unsafe void Dequantize(float* values)
    {
        nint destination = (nint)values;
        Parallel.For(0, Rows, o =>
        {
            float* row = (float*)destination + ((long)o * Columns);
            long codeBase = (long)o * Columns;
            int groupBase = o * Groups;
            for (int i = 0; i < Columns; i++)
            {
                int g = groupBase + GroupOf(i);
                row[i] = (Codes[codeBase + i] - Zeros[g]) * Scales[g];
            }
        });
    }
}
