namespace Celer.TestSupport;

/// <summary>
/// An MXFP4 encoder from the OCP Microscaling definition, for tests that write MXFP4 checkpoints: a block's E8M0 scale is
/// 2^(⌊log2 max|x|⌋ − 2) (E2M1's largest exponent is 2), each value the nearest E2M1 number of x / scale, saturated at ±6.
/// </summary>
public static class Mxfp4Packing
{
    private static readonly float[] E2M1 = [0f, 0.5f, 1f, 1.5f, 2f, 3f, 4f, 6f, -0f, -0.5f, -1f, -1.5f, -2f, -3f, -4f, -6f];

    /// <summary>The E8M0 scale byte of a block.</summary>
    public static byte Scale(ReadOnlySpan<float> block)
    {
        float max = 0;
        foreach (float x in block)
        {
            max = Math.Max(max, Math.Abs(x));
        }

        int exponent = max == 0 ? -127 : (int)Math.Floor(Math.Log2(max)) - 2;
        return (byte)Math.Clamp(exponent + 127, 0, 254);
    }

    /// <summary>The code (0–15) of the E2M1 number nearest x / 2^(scale − 127).</summary>
    public static int NearestCode(float x, byte scale)
    {
        float scaled = x / MathF.Pow(2, scale - 127);
        int best = 0;
        for (int code = 1; code < 16; code++)
        {
            if (Math.Abs(E2M1[code] - scaled) < Math.Abs(E2M1[best] - scaled))
            {
                best = code;
            }
        }

        return best;
    }

    /// <summary>What a code stands for under a scale.</summary>
    public static float Value(int code, byte scale) => E2M1[code] * MathF.Pow(2, scale - 127);
}
