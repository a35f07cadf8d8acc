using Celer.Models.Weights;

namespace Celer.Models.Quantization;

/// <summary>
/// Round-to-nearest integer quantization of a float matrix (<see cref="Quantize"/>) and <see cref="IntWeights"/> packed
/// into each format's tensors: the inverse of <see cref="IntWeightReader"/>, for <c>celer quantize</c>.
/// </summary>
public static class IntWeightWriter
{
    /// <summary>A tensor to store: the suffix after the module name, its dtype, shape and bytes.</summary>
    public sealed record Stored(string Suffix, DType DType, int[] Shape, byte[] Data);

    /// <summary>
    /// Codes of a [rows, columns] matrix per group of <paramref name="groupSize"/> columns (0: per row), from each
    /// group's min and max widened to include 0, as GPTQ's quantizer and compressed-tensors' min-max observer set them:
    /// asymmetric, scale = (max − min) / (2^bits − 1) and zero = round(−min / scale); symmetric, scale = 2·absmax /
    /// (2^bits − 1) and zero = 2^(bits−1). The scale is rounded by <paramref name="roundScale"/> (to the dtype it is stored
    /// in) before the codes are taken, so (code − zero) · stored scale is the nearest the format can say.
    /// </summary>
    public static IntWeights Quantize(float[] weight, int rows, int columns, int bits, int groupSize, bool symmetric, Func<float, float> roundScale)
    {
        int width = groupSize == 0 ? columns : groupSize, groups = (columns + width - 1) / width, maxq = (1 << bits) - 1;
        var codes = new byte[(long)rows * columns];
        var zeros = new int[rows * groups];
        var scales = new float[rows * groups];
        Parallel.For(0, rows, r =>
        {
            for (int g = 0; g < groups; g++)
            {
                int start = g * width, end = Math.Min(columns, start + width);
                float low = 0, high = 0;
                for (int c = start; c < end; c++)
                {
                    float v = weight[((long)r * columns) + c];
                    low = MathF.Min(low, v);
                    high = MathF.Max(high, v);
                }

                float scale = symmetric ? 2 * MathF.Max(high, -low) / maxq : (high - low) / maxq;
                scale = scale > 0 ? roundScale(scale) : 1f;   // an all-zero group: any scale, its codes are the zero
                int zero = symmetric ? (maxq + 1) / 2 : Math.Clamp((int)MathF.Round(-low / scale, MidpointRounding.ToEven), 0, maxq);
                zeros[(r * groups) + g] = zero;
                scales[(r * groups) + g] = scale;
                for (int c = start; c < end; c++)
                {
                    float q = MathF.Round(weight[((long)r * columns) + c] / scale, MidpointRounding.ToEven) + zero;
                    codes[((long)r * columns) + c] = (byte)Math.Clamp(q, 0, maxq);
                }
            }
        });

        return new IntWeights { Rows = rows, Columns = columns, Bits = bits, Codes = codes, Groups = groups, Zeros = zeros, Scales = scales, GroupSize = groupSize };
    }

    /// <summary>GPTQ's tensors (<see cref="IntWeightLayout.Gptq"/>), zero points stored minus one for checkpoint_format "gptq".</summary>
    public static Stored[] Gptq(IntWeights w, bool zerosMinusOne)
    {
        int pack = 32 / w.Bits, mask = (1 << w.Bits) - 1;
        var qweight = new int[(long)w.Columns / pack * w.Rows];
        Parallel.For(0, w.Columns / pack, r =>
        {
            for (int o = 0; o < w.Rows; o++)
            {
                uint word = 0;
                for (int k = 0; k < pack; k++)
                {
                    word |= (uint)w.Codes[((long)o * w.Columns) + (r * pack) + k] << (k * w.Bits);
                }

                qweight[((long)r * w.Rows) + o] = (int)word;
            }
        });

        int zeroWords = (w.Rows + pack - 1) / pack;
        var qzeros = new int[w.Groups * zeroWords];
        for (int g = 0; g < w.Groups; g++)
        {
            for (int o = 0; o < w.Rows; o++)
            {
                qzeros[(g * zeroWords) + (o / pack)] |= ((w.Zeros[(o * w.Groups) + g] - (zerosMinusOne ? 1 : 0)) & mask) << (o % pack * w.Bits);
            }
        }

        return
        [
            new("qweight", DType.I32, [w.Columns / pack, w.Rows], Bytes(qweight)),
            new("qzeros", DType.I32, [w.Groups, zeroWords], Bytes(qzeros)),
            new("scales", DType.F16, [w.Groups, w.Rows], Half16(Transposed(w.Scales, w.Rows, w.Groups))),
            new("g_idx", DType.I32, [w.Columns], Bytes([.. Enumerable.Range(0, w.Columns).Select(w.GroupOf)])),
        ];
    }

    /// <summary>AWQ's GEMM tensors (<see cref="IntWeightLayout.Awq"/>): along the output, nibbles in the order 0, 2, 4, 6, 1, 3, 5, 7.</summary>
    public static Stored[] Awq(IntWeights w)
    {
        int words = w.Rows / 8;
        var qweight = new int[(long)w.Columns * words];
        var qzeros = new int[w.Groups * words];
        // Each word column (8 output rows) by one thread: its words are its own.
        Parallel.For(0, words, word =>
        {
            for (int o = word * 8; o < (word * 8) + 8; o++)
            {
                int shift = 4 * IntWeightReader.AwqNibble(o % 8);
                for (int i = 0; i < w.Columns; i++)
                {
                    qweight[((long)i * words) + word] |= w.Codes[((long)o * w.Columns) + i] << shift;
                }

                for (int g = 0; g < w.Groups; g++)
                {
                    qzeros[(g * words) + word] |= w.Zeros[(o * w.Groups) + g] << shift;
                }
            }
        });

        return
        [
            new("qweight", DType.I32, [w.Columns, words], Bytes(qweight)),
            new("qzeros", DType.I32, [w.Groups, words], Bytes(qzeros)),
            new("scales", DType.F16, [w.Groups, w.Rows], Half16(Transposed(w.Scales, w.Rows, w.Groups))),
        ];
    }

    /// <summary>
    /// compressed-tensors pack-quantized tensors (<see cref="IntWeightLayout.CompressedTensorsPacked"/>) of a symmetric
    /// scheme (codes offset by 2^(bits−1) as stored, no zero points), scales in <paramref name="scaleType"/>.
    /// </summary>
    public static Stored[] CompressedTensorsPacked(IntWeights w, DType scaleType)
    {
        int pack = 32 / w.Bits, perRow = (w.Columns + pack - 1) / pack;
        var packed = new int[(long)w.Rows * perRow];
        Parallel.For(0, w.Rows, o =>
        {
            for (int i = 0; i < w.Columns; i++)
            {
                packed[((long)o * perRow) + (i / pack)] |= w.Codes[((long)o * w.Columns) + i] << (i % pack * w.Bits);
            }
        });

        byte[] scales = scaleType switch
        {
            DType.F32 => Bytes(w.Scales),
            DType.F16 => Half16(w.Scales),
            _ => [.. w.Scales.SelectMany(s => BitConverter.GetBytes(HalfConversions.FloatToBf16(s)))],
        };
        return
        [
            new("weight_packed", DType.I32, [w.Rows, perRow], Bytes(packed)),
            new("weight_scale", scaleType, [w.Rows, w.Groups], scales),
            new("weight_shape", DType.I64, [2], [.. BitConverter.GetBytes((long)w.Rows), .. BitConverter.GetBytes((long)w.Columns)]),
        ];
    }

    private static float[] Transposed(float[] values, int rows, int columns)
    {
        var t = new float[values.Length];
        for (int r = 0; r < rows; r++)
        {
            for (int c = 0; c < columns; c++)
            {
                t[(c * rows) + r] = values[(r * columns) + c];
            }
        }

        return t;
    }

    private static byte[] Bytes<T>(T[] values) where T : unmanaged =>
        System.Runtime.InteropServices.MemoryMarshal.AsBytes(values.AsSpan()).ToArray();

    private static byte[] Half16(float[] values) => Bytes([.. values.Select(v => (Half)v)]);
}
