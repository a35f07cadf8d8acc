using Celer.Models.Weights;

namespace Celer.Models.Quantization;

/// <summary>
/// Reads one module's integer-quantized weight in its format's layout (<see cref="IntWeightLayout"/>) into
/// <see cref="IntWeights"/>, checking every tensor's dtype and shape against the others and the scheme, so a checkpoint
/// packed differently from what its config says fails at load naming the tensor, not with wrong outputs.
/// </summary>
internal static unsafe class IntWeightReader
{
    /// <summary>The tensor of <paramref name="module"/> whose presence marks it quantized in <paramref name="layout"/>.</summary>
    public static string MarkerTensor(string module, IntWeightLayout layout) => layout switch
    {
        IntWeightLayout.Gptq or IntWeightLayout.Awq => module + ".qweight",
        IntWeightLayout.CompressedTensorsPacked => module + ".weight_packed",
        _ => module + ".weight",
    };

    public static IntWeights Read(IWeightSource source, string module, IntWeightScheme scheme) => scheme.Layout switch
    {
        IntWeightLayout.Gptq => Gptq(source, module, scheme),
        IntWeightLayout.Awq => Awq(source, module, scheme),
        IntWeightLayout.CompressedTensorsPacked => CompressedTensorsPacked(source, module, scheme),
        _ => CompressedTensorsInt8(source, module, scheme),
    };

    private static IntWeights Gptq(IWeightSource source, string module, IntWeightScheme scheme)
    {
        int pack = scheme.PackFactor, bits = scheme.Bits, mask = (1 << bits) - 1;
        WeightTensor qweight = Matrix(source, module + ".qweight", DType.I32);
        int columns = qweight.Shape[0] * pack, rows = qweight.Shape[1];
        (float[] stored, int groups) = GroupScales(source, module + ".scales", rows, transposed: true);
        int[]? groupIndex = scheme.ActOrder ? GroupIndex(source, module + ".g_idx", columns, groups) : null;
        CheckGroups(module, scheme, columns, groups, groupIndex is not null);
        ReadOnlySpan<int> zeroWords = Ints(source.Get(module + ".qzeros", groups, Ceiling(rows, pack)));

        // Output rows in parallel (an 8B model has seven billion codes); each row gathers one code from every word row.
        var codes = new byte[(long)rows * columns];
        nint data = qweight.Data;
        int wordRows = qweight.Shape[0];
        Parallel.For(0, rows, o =>
        {
            int* words = (int*)data;
            long target = (long)o * columns;
            for (int w = 0; w < wordRows; w++)
            {
                int word = words[((long)w * rows) + o];
                for (int k = 0; k < pack; k++)
                {
                    codes[target + (w * pack) + k] = (byte)((word >> (k * bits)) & mask);
                }
            }
        });

        int zeroColumns = Ceiling(rows, pack), offset = scheme.ZerosMinusOne ? 1 : 0;
        var zeros = new int[rows * groups];
        var scales = new float[rows * groups];
        for (int g = 0; g < groups; g++)
        {
            for (int o = 0; o < rows; o++)
            {
                zeros[(o * groups) + g] = ((zeroWords[(g * zeroColumns) + (o / pack)] >> (o % pack * bits)) & mask) + offset;
                scales[(o * groups) + g] = stored[(g * rows) + o];
            }
        }

        return new IntWeights { Rows = rows, Columns = columns, Bits = bits, Codes = codes, Groups = groups, Zeros = zeros, Scales = scales, GroupSize = scheme.GroupSize, GroupIndex = groupIndex };
    }

    /// <summary>Where AWQ's GEMM layout keeps column c (0–7) of each packed word: nibble p holds column 0, 2, 4, 6, 1, 3, 5, 7.</summary>
    public static int AwqNibble(int column) => ((column & 1) * 4) + (column >> 1);

    private static IntWeights Awq(IWeightSource source, string module, IntWeightScheme scheme)
    {
        WeightTensor qweight = Matrix(source, module + ".qweight", DType.I32);
        int columns = qweight.Shape[0], rows = qweight.Shape[1] * 8;
        (float[] stored, int groups) = GroupScales(source, module + ".scales", rows, transposed: true);
        CheckGroups(module, scheme, columns, groups, actOrder: false);
        ReadOnlySpan<int> zeroWords = Ints(source.Get(module + ".qzeros", groups, rows / 8));

        var codes = new byte[(long)rows * columns];
        nint data = qweight.Data;
        Parallel.For(0, rows, o =>
        {
            int* words = (int*)data;
            int shift = 4 * AwqNibble(o % 8);
            long target = (long)o * columns;
            for (int i = 0; i < columns; i++)
            {
                codes[target + i] = (byte)((words[((long)i * (rows / 8)) + (o / 8)] >> shift) & 0xF);
            }
        });

        var zeros = new int[rows * groups];
        var scales = new float[rows * groups];
        for (int g = 0; g < groups; g++)
        {
            for (int o = 0; o < rows; o++)
            {
                zeros[(o * groups) + g] = (zeroWords[(g * (rows / 8)) + (o / 8)] >> (4 * AwqNibble(o % 8))) & 0xF;
                scales[(o * groups) + g] = stored[(g * rows) + o];
            }
        }

        return new IntWeights { Rows = rows, Columns = columns, Bits = 4, Codes = codes, Groups = groups, Zeros = zeros, Scales = scales, GroupSize = scheme.GroupSize };
    }

    private static IntWeights CompressedTensorsPacked(IWeightSource source, string module, IntWeightScheme scheme)
    {
        int pack = scheme.PackFactor, bits = scheme.Bits, mask = (1 << bits) - 1;
        ReadOnlySpan<int> shape = Ints(source.Get(module + ".weight_shape", 2));
        (int rows, int columns) = (shape[0], shape[1]);
        if (rows <= 0 || columns <= 0)
        {
            throw new ModelLoadException($"'{module}.weight_shape' is [{rows}, {columns}]; a weight's shape is positive");
        }

        WeightTensor packed = source.Get(module + ".weight_packed", rows, Ceiling(columns, pack));
        RequireDType(packed, DType.I32);
        (float[] scales, int groups) = GroupScales(source, module + ".weight_scale", rows, transposed: false);
        int[]? groupIndex = scheme.ActOrder ? GroupIndex(source, module + ".weight_g_idx", columns, groups) : null;
        CheckGroups(module, scheme, columns, groups, groupIndex is not null);

        int wordsPerRow = Ceiling(columns, pack);
        var codes = new byte[(long)rows * columns];
        nint data = packed.Data;
        Parallel.For(0, rows, o =>
        {
            int* words = (int*)data + ((long)o * wordsPerRow);
            long target = (long)o * columns;
            for (int i = 0; i < columns; i++)
            {
                codes[target + i] = (byte)((words[i / pack] >> (i % pack * bits)) & mask);
            }
        });

        // Codes are stored offset by 2^(bits-1) to unsigned, and so are the asymmetric zero points: the middle is zero.
        var zeros = new int[rows * groups];
        if (scheme.Symmetric)
        {
            Array.Fill(zeros, 1 << (bits - 1));
        }
        else
        {
            ReadOnlySpan<int> zeroWords = Ints(source.Get(module + ".weight_zero_point", Ceiling(rows, pack), groups));
            for (int o = 0; o < rows; o++)
            {
                for (int g = 0; g < groups; g++)
                {
                    zeros[(o * groups) + g] = (zeroWords[(o / pack * groups) + g] >> (o % pack * bits)) & mask;
                }
            }
        }

        return new IntWeights { Rows = rows, Columns = columns, Bits = bits, Codes = codes, Groups = groups, Zeros = zeros, Scales = scales, GroupSize = scheme.GroupSize, GroupIndex = groupIndex };
    }

    private static IntWeights CompressedTensorsInt8(IWeightSource source, string module, IntWeightScheme scheme)
    {
        WeightTensor weight = Matrix(source, module + ".weight", DType.I8);
        int rows = weight.Shape[0], columns = weight.Shape[1];
        (float[] scales, int groups) = GroupScales(source, module + ".weight_scale", rows, transposed: false);
        int[]? groupIndex = scheme.ActOrder ? GroupIndex(source, module + ".weight_g_idx", columns, groups) : null;
        CheckGroups(module, scheme, columns, groups, groupIndex is not null);

        // Signed codes and zero points, moved to unsigned by 128 alike (their difference is the same).
        ReadOnlySpan<sbyte> stored = weight.AsSpan<sbyte>();
        var codes = new byte[(long)rows * columns];
        for (long i = 0; i < codes.LongLength; i++)
        {
            codes[i] = (byte)(stored[(int)i] + 128);
        }

        var zeros = new int[rows * groups];
        if (scheme.Symmetric)
        {
            Array.Fill(zeros, 128);
        }
        else
        {
            WeightTensor zeroPoint = source.Get(module + ".weight_zero_point", rows, groups);
            RequireDType(zeroPoint, DType.I8);
            ReadOnlySpan<sbyte> storedZeros = zeroPoint.AsSpan<sbyte>();
            for (int j = 0; j < zeros.Length; j++)
            {
                zeros[j] = storedZeros[j] + 128;
            }
        }

        return new IntWeights { Rows = rows, Columns = columns, Bits = 8, Codes = codes, Groups = groups, Zeros = zeros, Scales = scales, GroupSize = scheme.GroupSize, GroupIndex = groupIndex };
    }

    /// <summary>
    /// Scales as stored, [groups, rows] (GPTQ, AWQ: <paramref name="transposed"/>) or [rows, groups] (compressed-tensors),
    /// in fp32, with the group count they imply.
    /// </summary>
    private static (float[] Values, int Groups) GroupScales(IWeightSource source, string name, int rows, bool transposed)
    {
        WeightTensor t = source.Get(name);
        float[] values = ScaleTensor.Read(t);
        if (t.Shape.Length != 2 || t.Shape[transposed ? 1 : 0] != rows)
        {
            string expected = transposed ? $"[groups, {rows}]" : $"[{rows}, groups]";
            throw new ModelLoadException($"'{name}' has shape {WeightTensor.FormatShape(t.Shape)}; expected {expected}");
        }

        return (values, t.Shape[transposed ? 0 : 1]);
    }

    /// <summary>An act-order group index: one group per input column, each a group the scales have.</summary>
    private static int[] GroupIndex(IWeightSource source, string name, int columns, int groups)
    {
        int[] index = Ints(source.Get(name, columns)).ToArray();
        foreach (int g in index)
        {
            if ((uint)g >= (uint)groups)
            {
                throw new ModelLoadException($"'{name}' names group {g}; the scales have {groups}");
            }
        }

        return index;
    }

    /// <summary>Without act-order the groups are the columns in runs of the group size: their count must be what the scales hold.</summary>
    private static void CheckGroups(string module, IntWeightScheme scheme, int columns, int groups, bool actOrder)
    {
        int expected = scheme.GroupSize == 0 ? 1 : Ceiling(columns, scheme.GroupSize);
        if (!actOrder && groups != expected)
        {
            string how = scheme.GroupSize == 0 ? "one group (per channel)" : $"groups of {scheme.GroupSize}";
            throw new ModelLoadException($"'{module}' has {groups} scale groups for {columns} input columns; quantization_config's {how} makes {expected}");
        }
    }

    private static WeightTensor Matrix(IWeightSource source, string name, DType dtype)
    {
        WeightTensor t = source.Get(name);
        RequireDType(t, dtype);
        return t.Shape.Length == 2
            ? t
            : throw new ModelLoadException($"'{name}' has shape {WeightTensor.FormatShape(t.Shape)}; Celer reads quantized linear weights as matrices (quantized 3-D MoE expert tensors are not supported)");
    }

    /// <summary>Integers stored as I32, or as I64 within int range (compressed-tensors' weight_shape, torch's default).</summary>
    private static ReadOnlySpan<int> Ints(WeightTensor t)
    {
        if (t.DType == DType.I32)
        {
            return t.AsSpan<int>();
        }

        if (t.DType != DType.I64)
        {
            throw new ModelLoadException($"'{t.Name}' is {t.DType}; expected I32");
        }

        ReadOnlySpan<long> wide = t.AsSpan<long>();
        var narrow = new int[wide.Length];
        for (int i = 0; i < wide.Length; i++)
        {
            narrow[i] = wide[i] is >= int.MinValue and <= int.MaxValue ? (int)wide[i] : throw new ModelLoadException($"'{t.Name}' holds {wide[i]}, beyond 32 bits");
        }

        return narrow;
    }

    private static void RequireDType(WeightTensor t, DType dtype)
    {
        if (t.DType != dtype)
        {
            throw new ModelLoadException($"'{t.Name}' is {t.DType}; expected {dtype}");
        }
    }

    private static int Ceiling(int value, int divisor) => (value + divisor - 1) / divisor;
}
