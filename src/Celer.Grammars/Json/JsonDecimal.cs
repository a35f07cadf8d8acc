using System.Globalization;
using System.Numerics;

namespace Celer.Grammars.Json;

/// <summary>
/// A JSON number exactly, as <c>Mantissa × 10^Exponent</c> with no trailing zeros in the mantissa: schema bounds are
/// compared and split into digits without the rounding a double would bring (0.1 is not a double).
/// </summary>
internal readonly record struct JsonDecimal(BigInteger Mantissa, int Exponent) : IComparable<JsonDecimal>
{
    // A bound with more digits than this on either side of the point is refused: its digit-range grammar would be
    // as long as the number, and no real schema needs one.
    public const int MaxDigits = 400;

    public static JsonDecimal Zero => default;

    public int Sign => Mantissa.Sign;

    public bool IsInteger => Exponent >= 0;

    /// <summary>Parses JSON number text; null when it is not one or has more than <see cref="MaxDigits"/> digits
    /// before or after the point.</summary>
    public static JsonDecimal? Parse(string text)
    {
        int i = 0;
        bool negative = i < text.Length && text[i] == '-';
        if (negative)
        {
            i++;
        }

        int start = i;
        while (i < text.Length && char.IsAsciiDigit(text[i]))
        {
            i++;
        }

        string whole = text[start..i];
        string fraction = "";
        if (i < text.Length && text[i] == '.')
        {
            int f = ++i;
            while (i < text.Length && char.IsAsciiDigit(text[i]))
            {
                i++;
            }

            fraction = text[f..i];
        }

        long exponent = 0;
        if (i < text.Length && text[i] is 'e' or 'E')
        {
            i++;
            bool negativeExponent = i < text.Length && text[i] == '-';
            if (i < text.Length && text[i] is '+' or '-')
            {
                i++;
            }

            int e = i;
            while (i < text.Length && char.IsAsciiDigit(text[i]))
            {
                i++;
            }

            if (i == e || i - e > 9)
            {
                return null;
            }

            exponent = long.Parse(text[e..i], CultureInfo.InvariantCulture) * (negativeExponent ? -1 : 1);
        }

        if (whole.Length == 0 || i != text.Length || whole.Length + fraction.Length > 2 * MaxDigits)
        {
            return null;
        }

        var mantissa = BigInteger.Parse(whole + fraction, CultureInfo.InvariantCulture);
        var value = Normalize(negative ? -mantissa : mantissa, exponent - fraction.Length);
        return value is { } v && -v.Exponent <= MaxDigits && v.MantissaDigits + v.Exponent <= MaxDigits ? v : null;
    }

    public static JsonDecimal FromInteger(BigInteger value) => Normalize(value, 0)!.Value;

    public JsonDecimal Negate() => new(-Mantissa, Exponent);

    /// <summary>The largest integer not above this number.</summary>
    public BigInteger Floor()
    {
        if (Exponent >= 0)
        {
            return Mantissa * BigInteger.Pow(10, Exponent);
        }

        var quotient = BigInteger.DivRem(Mantissa, BigInteger.Pow(10, -Exponent), out var remainder);
        return remainder.Sign < 0 ? quotient - 1 : quotient;
    }

    /// <summary>The smallest integer not below this number.</summary>
    public BigInteger Ceiling() => -Negate().Floor();

    /// <summary>The digits before the point of the absolute value ("0" below one).</summary>
    public string IntegerDigits => new JsonDecimal(BigInteger.Abs(Mantissa), Exponent).Floor().ToString(CultureInfo.InvariantCulture);

    /// <summary>The digits after the point of the absolute value, without trailing zeros ("" for an integer).</summary>
    public string FractionDigits
    {
        get
        {
            if (Exponent >= 0)
            {
                return "";
            }

            string digits = BigInteger.Abs(Mantissa).ToString(CultureInfo.InvariantCulture).PadLeft(-Exponent + 1, '0');
            return digits[^(-Exponent)..];
        }
    }

    public int CompareTo(JsonDecimal other)
    {
        int e = Math.Min(Exponent, other.Exponent);
        return (Mantissa * BigInteger.Pow(10, Exponent - e)).CompareTo(other.Mantissa * BigInteger.Pow(10, other.Exponent - e));
    }

    /// <summary>Whether every integer is a multiple of this (positive) number: 1/this is an integer.</summary>
    public bool DividesOne => Exponent <= 0 && (BigInteger.Pow(10, -Exponent) % Mantissa).IsZero;

    public override string ToString() => (Sign < 0 ? "-" : "") + IntegerDigits + (Exponent < 0 ? "." + FractionDigits : "");

    public static bool operator <(JsonDecimal a, JsonDecimal b) => a.CompareTo(b) < 0;

    public static bool operator >(JsonDecimal a, JsonDecimal b) => a.CompareTo(b) > 0;

    public static bool operator <=(JsonDecimal a, JsonDecimal b) => a.CompareTo(b) <= 0;

    public static bool operator >=(JsonDecimal a, JsonDecimal b) => a.CompareTo(b) >= 0;

    private int MantissaDigits => BigInteger.Abs(Mantissa).ToString(CultureInfo.InvariantCulture).Length;

    private static JsonDecimal? Normalize(BigInteger mantissa, long exponent)
    {
        if (mantissa.IsZero)
        {
            return Zero;
        }

        while ((mantissa % 10).IsZero)
        {
            mantissa /= 10;
            exponent++;
        }

        return exponent is > int.MaxValue / 2 or < int.MinValue / 2 ? null : new JsonDecimal(mantissa, (int)exponent);
    }
}
