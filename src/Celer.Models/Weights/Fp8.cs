namespace Celer.Models.Weights;

/// <summary>
/// The two OCP FP8 formats (FP8 checkpoints' E4M3 weights, the KV caches of <c>--kv-cache-dtype fp8|fp8_e4m3|fp8_e5m2</c>),
/// converted as the CUDA kernels do (cuda_fp8.h's conversion with __NV_SATFINITE): round to nearest even, saturate to
/// the largest finite value, NaN to 0x7f. E4M3: bias 7, three mantissa bits, no infinities, largest 448. E5M2: bias 15,
/// two mantissa bits, largest finite 57344. Decoding goes through a 256-entry table per format.
/// </summary>
public static unsafe class Fp8
{
    private static readonly float[] E4M3 = Table(DType.F8E4M3), E5M2 = Table(DType.F8E5M2);

    /// <summary>The value of one code.</summary>
    public static float Decode(byte code, DType type) => TableOf(type)[code];

    /// <summary>dst[i] = value(src[i]) · scale.</summary>
    public static void Decode(byte* src, DType type, float scale, float* dst, int count)
    {
        fixed (float* table = TableOf(type))
        {
            for (int i = 0; i < count; i++)
            {
                dst[i] = table[src[i]] * scale;
            }
        }
    }

    /// <summary>dst[i] = code(src[i] / scale), the division in fp32 as the GPU kernels do it.</summary>
    public static void Encode(float* src, float scale, DType type, byte* dst, int count)
    {
        for (int i = 0; i < count; i++)
        {
            dst[i] = Encode(src[i] / scale, type);
        }
    }

    public static byte Encode(float value, DType type)
    {
        if (type == DType.F8E4M3)
        {
            return EncodeE4M3(value);
        }

        if (float.IsNaN(value))
        {
            return 0x7f;
        }

        Format f = FormatOf(type);
        byte sign = float.IsNegative(value) ? (byte)0x80 : (byte)0;
        double a = Math.Abs((double)value);
        if (a >= f.MaxFinite)
        {
            return (byte)(sign | f.MaxCode);
        }

        if (a == 0)
        {
            return sign;
        }

        // Round to the quantum of a's binade (the subnormal one below the smallest normal); a / quantum is exact.
        double quantum = Math.ScaleB(1.0, Math.Max(f.MinExponent, Math.ILogB(a)) - f.MantissaBits);
        double rounded = Math.Round(a / quantum, MidpointRounding.ToEven) * quantum;
        if (rounded >= f.MaxFinite)
        {
            return (byte)(sign | f.MaxCode);
        }

        int field, mantissa;
        if (rounded < Math.ScaleB(1.0, f.MinExponent))
        {
            field = 0;
            mantissa = (int)(rounded / Math.ScaleB(1.0, f.MinExponent - f.MantissaBits));
        }
        else
        {
            int e = Math.ILogB(rounded);
            field = e + f.Bias;
            mantissa = (int)(rounded / Math.ScaleB(1.0, e - f.MantissaBits)) - (1 << f.MantissaBits);
        }

        return (byte)(sign | (field << f.MantissaBits) | mantissa);
    }

    /// <summary>
    /// E4M3 from the float's bits (the hot path: every W8A8 input on the CPU, every weight of an online-quantized model):
    /// a normal value keeps 3 of its 23 mantissa bits, rounded to nearest even, and is re-biased from 127 to 7; below
    /// 2^-6 the value is a multiple of 2^-9 (the subnormal quantum), rounded to nearest even.
    /// </summary>
    private static byte EncodeE4M3(float value)
    {
        uint bits = BitConverter.SingleToUInt32Bits(value);
        byte sign = (byte)((bits >> 24) & 0x80);
        uint magnitude = bits & 0x7FFF_FFFF;
        if (magnitude > 0x7F80_0000)
        {
            return 0x7f;   // NaN
        }

        if (magnitude >= 0x43E0_0000)
        {
            return (byte)(sign | 0x7e);   // 448 and beyond (infinity too) saturate; below 448 nothing rounds past it
        }

        if (magnitude >= 0x3C80_0000)
        {
            // 2^-6 and up: drop 20 mantissa bits rounding to nearest even (a carry may step the exponent, as it should).
            uint rounded = (magnitude + 0x7FFFF + ((magnitude >> 20) & 1)) >> 20;
            return (byte)(sign | (rounded - (120u << 3)));
        }

        // Subnormal (or zero): the count of 2^-9 quanta, exact in fp32 before rounding; 8 quanta is the smallest normal.
        return (byte)(sign | (int)MathF.Round(BitConverter.UInt32BitsToSingle(magnitude) * 512f, MidpointRounding.ToEven));
    }

    private static float[] TableOf(DType type) => type switch
    {
        DType.F8E4M3 => E4M3,
        DType.F8E5M2 => E5M2,
        _ => throw new ArgumentOutOfRangeException(nameof(type), type, "not an FP8 format"),
    };

    private readonly record struct Format(int MantissaBits, int Bias, double MaxFinite, byte MaxCode)
    {
        public int MinExponent => 1 - Bias;
    }

    private static Format FormatOf(DType type) => type switch
    {
        DType.F8E4M3 => new Format(3, 7, 448, 0x7e),
        DType.F8E5M2 => new Format(2, 15, 57344, 0x7b),
        _ => throw new ArgumentOutOfRangeException(nameof(type), type, "not an FP8 format"),
    };

    /// <summary>Every code's value from the format's definition.</summary>
    private static float[] Table(DType type)
    {
        Format f = FormatOf(type);
        int exponentBits = 7 - f.MantissaBits, mantissaMask = (1 << f.MantissaBits) - 1, exponentMax = (1 << exponentBits) - 1;
        var table = new float[256];
        for (int code = 0; code < 256; code++)
        {
            int field = (code >> f.MantissaBits) & exponentMax, mantissa = code & mantissaMask;
            double value;
            if (type == DType.F8E4M3 && field == exponentMax && mantissa == mantissaMask)
            {
                value = double.NaN;
            }
            else if (type == DType.F8E5M2 && field == exponentMax)
            {
                value = mantissa == 0 ? double.PositiveInfinity : double.NaN;
            }
            else
            {
                value = field == 0
                    ? Math.ScaleB(mantissa, f.MinExponent - f.MantissaBits)
                    : Math.ScaleB((1 << f.MantissaBits) + mantissa, field - f.Bias - f.MantissaBits);
            }

            table[code] = (float)((code & 0x80) != 0 ? -value : value);
        }

        return table;
    }
}
