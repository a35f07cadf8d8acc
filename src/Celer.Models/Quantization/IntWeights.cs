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

    /// <summary>
    /// The unpacked weights of <paramref name="parts"/> (<see cref="WeightTensor.Packed"/>), which a backend stacks along
    /// their rows into <paramref name="name"/>: every part integer-quantized, all of one width.
    /// </summary>
    public static IntWeights[] Stacked(string name, WeightTensor[] parts)
    {
        if (parts.Any(p => p.Packed is null) || parts.Any(p => p.Packed!.Columns != parts[0].Packed!.Columns))
        {
            throw new ModelLoadException($"the parts of '{name}' ({string.Join(", ", parts.Select(p => p.ToString()))}) are not integer-quantized matrices of one width");
        }

        return [.. parts.Select(p => p.Packed!)];
    }

    /// <summary>
    /// The columns sorted by their stored group (a stable sort: act-order checkpoints), or null when they already are in
    /// group order (no group index, or one that runs in column order).
    /// </summary>
    public int[]? ColumnOrder()
    {
        if (GroupIndex is not { } index)
        {
            return null;
        }

        int[] order = [.. Enumerable.Range(0, Columns).OrderBy(c => index[c])];
        return order.Select((c, j) => c == j).All(same => same) ? null : order;
    }

    /// <summary>
    /// Whether parts stacked along their rows share one packed layout of <paramref name="bits"/>-bit codes in whole runs
    /// of 8: every part of those bits, its width and group size multiples of 8, one group count, one column order
    /// (<paramref name="order"/>, the parts' <see cref="ColumnOrder"/>) in which each position j holds a column of group
    /// j / group size, as GPTQ's act-order makes them. A backend's integer kernels then read groups as runs of columns of
    /// the reordered input.
    /// </summary>
    public static bool Packable(IntWeights[] parts, int bits, out int[]? order)
    {
        IntWeights first = parts[0];
        int[]? common = order = first.ColumnOrder();
        return parts.All(w => w.Bits == bits && w.Columns == first.Columns && w.Columns % 8 == 0 && w.GroupSize % 8 == 0
            && w.GroupSize == first.GroupSize && w.Groups == first.Groups && SameOrder(w.ColumnOrder(), common) && w.GroupsAreRuns(common));
    }

    /// <summary>
    /// The parts' 8-bit codes stacked along their rows, a byte each, columns in the reordered input's order
    /// (<paramref name="order"/>, null: as stored). Rows in parallel.
    /// </summary>
    public static byte[] StackBytes(IntWeights[] parts, int[]? order)
    {
        int columns = parts[0].Columns;
        var codes = new byte[(long)parts.Sum(w => w.Rows) * columns];
        long first = 0;
        foreach (IntWeights w in parts)
        {
            long start = first;
            Parallel.For(0, w.Rows, o =>
            {
                long source = (long)o * columns, target = (start + o) * columns;
                for (int c = 0; c < columns; c++)
                {
                    codes[target + c] = w.Codes[source + (order?[c] ?? c)];
                }
            });
            first += w.Rows;
        }

        return codes;
    }

    /// <summary>
    /// The parts' 4-bit codes stacked along their rows, 8 per 32-bit word, columns / 8 words per row:
    /// nibble i of a row's word q holds the code of column <paramref name="columnOf"/>(q, i) of the reordered input
    /// (<paramref name="order"/>, null: as stored). Rows in parallel.
    /// </summary>
    public static uint[] PackCodes(IntWeights[] parts, int[]? order, Func<int, int, int> columnOf)
    {
        int columns = parts[0].Columns, words = columns / 8;
        var codes = new uint[(long)parts.Sum(w => w.Rows) * words];
        int first = 0;
        foreach (IntWeights w in parts)
        {
            int start = first;
            Parallel.For(0, w.Rows, o =>
            {
                long source = (long)o * columns, target = (long)(start + o) * words;
                for (int q = 0; q < words; q++)
                {
                    uint word = 0;
                    for (int i = 0; i < 8; i++)
                    {
                        int c = columnOf(q, i);
                        word |= (uint)w.Codes[source + (order?[c] ?? c)] << (4 * i);
                    }

                    codes[target + q] = word;
                }
            });
            first += w.Rows;
        }

        return codes;
    }

    /// <summary>The parts' (scale, zero point) pairs stacked along their rows: [rows, groups × 2] floats.</summary>
    public static float[] ScalesAndZeros(IntWeights[] parts)
    {
        int groups = parts[0].Groups;
        var pairs = new float[(long)parts.Sum(w => w.Rows) * groups * 2];
        long at = 0;
        foreach (IntWeights w in parts)
        {
            for (int j = 0; j < w.Rows * groups; j++, at += 2)
            {
                pairs[at] = w.Scales[j];
                pairs[at + 1] = w.Zeros[j];
            }
        }

        return pairs;
    }

    private static bool SameOrder(int[]? a, int[]? b) => a is null ? b is null : b is not null && a.AsSpan().SequenceEqual(b);

    /// <summary>Whether, in <paramref name="order"/>, position j holds a column of group j / group size.</summary>
    private bool GroupsAreRuns(int[]? order)
    {
        if (GroupIndex is not { } index)
        {
            return true;
        }

        for (int j = 0; j < Columns; j++)
        {
            if (index[order?[j] ?? j] != (GroupSize == 0 ? 0 : j / GroupSize))
            {
                return false;
            }
        }

        return true;
    }
}
