using Celer.Models.Weights;

namespace Celer.Models.Quantization;

/// <summary>
/// OCP microscaling FP4 (MXFP4), as gpt-oss's checkpoints store their experts: blocks of 32 values along a row, each
/// block 16 bytes of E2M1 codes (value 2i in the low nibble of byte i, value 2i + 1 in the high one) and one E8M0 scale
/// byte s meaning 2^(s − 127). A value is the code's E2M1 number times its block's scale.
/// </summary>
public static unsafe class Mxfp4
{
    /// <summary>Values per block, one scale each.</summary>
    public const int BlockSize = 32;

    /// <summary>Bytes of codes per block.</summary>
    public const int BlockBytes = BlockSize / 2;

    /// <summary>E2M1 by code: sign bit 3, two exponent bits (bias 1), one mantissa bit; 0b0001 is the subnormal 0.5.</summary>
    private static readonly float[] E2M1 = [0f, 0.5f, 1f, 1.5f, 2f, 3f, 4f, 6f, -0f, -0.5f, -1f, -1.5f, -2f, -3f, -4f, -6f];

    /// <summary>The value of code <paramref name="code"/> (0–15) under scale byte <paramref name="scale"/>.</summary>
    public static float Decode(int code, byte scale) => MathF.ScaleB(E2M1[code], scale - 127);

    /// <summary>
    /// One row of <paramref name="columns"/> values (a multiple of <see cref="BlockSize"/>) from its blocks
    /// (<paramref name="blocks"/>: columns / 2 bytes) and scales (columns / 32 bytes), rounded to bf16 (exact: every
    /// E2M1 value times a power of two in bf16's range is a bf16 number).
    /// </summary>
    public static void DecodeRowToBf16(byte* blocks, byte* scales, int columns, ushort* output)
    {
        for (int g = 0; g < columns / BlockSize; g++)
        {
            byte scale = scales[g];
            byte* codes = blocks + (g * BlockBytes);
            ushort* values = output + (g * BlockSize);
            for (int i = 0; i < BlockBytes; i++)
            {
                values[2 * i] = HalfConversions.FloatToBf16(Decode(codes[i] & 0xF, scale));
                values[(2 * i) + 1] = HalfConversions.FloatToBf16(Decode(codes[i] >> 4, scale));
            }
        }
    }
}
