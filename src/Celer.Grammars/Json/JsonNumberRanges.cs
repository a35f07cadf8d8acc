using System.Globalization;
using System.Numerics;

namespace Celer.Grammars.Json;

/// <summary>One end of a numeric range; <c>Exclusive</c> leaves the value itself out.</summary>
internal readonly record struct NumberBound(JsonDecimal Value, bool Exclusive);

/// <summary>
/// Numbers in a range as JSON text, exactly: the digit-range construction (the one behind regex generators for
/// integer ranges) splits a range into spans that share a prefix and leave the remaining digits free, so
/// [123, 4567] is 12[3-9] | 1[3-9]\d | [2-9]\d\d | [1-3]\d{3} | 4[0-4]\d\d | 45[0-5]\d | 456[0-7]. Decimals extend it
/// to the digits after the point, which compare digit by digit. Bounded numbers are written without an exponent and
/// never as "-0"; every text produced is inside the range, and every number inside it has a text.
/// </summary>
internal static class JsonNumberRanges
{
    private static readonly GrammarExpr Digit = JsonSyntax.Digit;

    /// <summary>The integers from <paramref name="lo"/> to <paramref name="hi"/> (null: unbounded), lo &lt;= hi.</summary>
    public static GrammarExpr Integers(BigInteger? lo, BigInteger? hi)
    {
        var alternatives = new List<GrammarExpr>();
        if (hi is not { Sign: < 0 })
        {
            alternatives.Add(Magnitudes(BigInteger.Max(lo ?? 0, 0), hi));
        }

        if (lo is not { Sign: >= 0 })
        {
            var smallest = hi is { Sign: < 0 } h ? -h : BigInteger.One;
            alternatives.Add(GrammarExpr.Sequence(GrammarExpr.Literal("-"), Magnitudes(smallest, -lo)));
        }

        return GrammarExpr.Choice(alternatives);
    }

    /// <summary>
    /// The decimals between the bounds (null: unbounded), with at most <paramref name="maxFractionDigits"/> digits
    /// after the point (null: any); null when no such number exists.
    /// </summary>
    public static GrammarExpr? Decimals(NumberBound? lo, NumberBound? hi, int? maxFractionDigits)
    {
        var alternatives = new List<GrammarExpr>();
        if (hi is not { } h || h.Value.Sign > 0 || (h.Value.Sign == 0 && !h.Exclusive))
        {
            var from = lo is { Value.Sign: >= 0 } l ? l : new NumberBound(JsonDecimal.Zero, false);
            if (Magnitude(from, hi, maxFractionDigits) is { } nonNegative)
            {
                alternatives.Add(nonNegative);
            }
        }

        if (lo is not { Value.Sign: >= 0 })
        {
            // Below zero, as a minus and a magnitude above zero: the upper bound becomes the magnitude's lower one.
            var from = hi is { Value.Sign: < 0 } h2 ? new NumberBound(h2.Value.Negate(), h2.Exclusive) : new NumberBound(JsonDecimal.Zero, true);
            NumberBound? to = lo is { } l2 ? new NumberBound(l2.Value.Negate(), l2.Exclusive) : null;
            if (Magnitude(from, to, maxFractionDigits) is { } negative)
            {
                alternatives.Add(GrammarExpr.Sequence(GrammarExpr.Literal("-"), negative));
            }
        }

        return alternatives.Count == 0 ? null : GrammarExpr.Choice(alternatives);
    }

    // Non-negative numbers from `lo` (>= 0) to `hi`: the integer part equal to lo's, strictly between, or equal to hi's.
    private static GrammarExpr? Magnitude(NumberBound lo, NumberBound? hi, int? room)
    {
        var loInteger = lo.Value.Floor();
        var loFraction = new FractionBound(lo.Value.FractionDigits, lo.Exclusive);
        var alternatives = new List<GrammarExpr>();
        if (hi is { } h && h.Value.Floor() == loInteger)
        {
            AddWithFraction(alternatives, Literal(loInteger), Fraction(loFraction, new FractionBound(h.Value.FractionDigits, h.Exclusive), room));
            return alternatives.Count == 0 ? null : GrammarExpr.Choice(alternatives);
        }

        AddWithFraction(alternatives, Literal(loInteger), Fraction(loFraction, null, room));
        var free = Fraction(null, null, room);
        if (hi is not { } upper)
        {
            AddWithFraction(alternatives, Magnitudes(loInteger + 1, null), free);
        }
        else
        {
            var hiInteger = upper.Value.Floor();
            if (loInteger + 1 <= hiInteger - 1)
            {
                AddWithFraction(alternatives, Magnitudes(loInteger + 1, hiInteger - 1), free);
            }

            AddWithFraction(alternatives, Literal(hiInteger), Fraction(null, new FractionBound(upper.Value.FractionDigits, upper.Exclusive), room));
        }

        return alternatives.Count == 0 ? null : GrammarExpr.Choice(alternatives);
    }

    private static void AddWithFraction(List<GrammarExpr> alternatives, GrammarExpr integerPart, DigitStrings fraction)
    {
        if (fraction.Empty)
        {
            alternatives.Add(integerPart);
        }

        if (fraction.NonEmpty is { } digits)
        {
            alternatives.Add(GrammarExpr.Sequence(integerPart, GrammarExpr.Literal("."), digits));
        }
    }

    /// <summary>Digits after the point, as the number 0.Digits (no trailing zeros); "" with Exclusive is "above zero".</summary>
    private sealed record FractionBound(string Digits, bool Exclusive);

    /// <summary>A set of digit strings: whether it holds the empty one, and the non-empty ones (null: none).</summary>
    private readonly record struct DigitStrings(bool Empty, GrammarExpr? NonEmpty);

    // The digit strings d (at most `room` long) with lo < 0.d < hi (or <=), read left to right: each first digit
    // either settles a bound (above lo's digit, below hi's) or ties with it and carries the rest of the bound along.
    private static DigitStrings Fraction(FractionBound? lo, FractionBound? hi, int? room)
    {
        if (lo is { Digits: "", Exclusive: false })
        {
            lo = null;
        }

        bool empty = lo is null && hi is not { Digits: "", Exclusive: true };
        if (room == 0)
        {
            return new DigitStrings(empty, null);
        }

        if (lo is null && hi is null)
        {
            return new DigitStrings(true, GrammarExpr.Repeat(Digit, 1, room));
        }

        if (hi is { Digits: "" })
        {
            // At most zero: only zeros, and only with no lower bound left.
            return hi.Exclusive || lo is not null ? default : new DigitStrings(true, GrammarExpr.Repeat(GrammarExpr.Literal("0"), 1, room));
        }

        if (lo is { Digits: "" } && hi is null)
        {
            return new DigitStrings(false, AboveZero(room));
        }

        var alternatives = new List<GrammarExpr>();
        int? rest = room - 1;
        int d = 0;
        while (d <= 9)
        {
            if (!Step(lo, hi, d, out var nextLo, out var nextHi))
            {
                d++;
                continue;
            }

            int last = d;
            while (last < 9 && Step(lo, hi, last + 1, out var l, out var h) && l == nextLo && h == nextHi)
            {
                last++;
            }

            var tail = Fraction(nextLo, nextHi, rest);
            var digits = new ByteSetExpr(ByteSet.Range((byte)('0' + d), (byte)('0' + last)));
            if (tail.NonEmpty is { } more)
            {
                alternatives.Add(GrammarExpr.Sequence(digits, tail.Empty ? GrammarExpr.Optional(more) : more));
            }
            else if (tail.Empty)
            {
                alternatives.Add(digits);
            }

            d = last + 1;
        }

        return new DigitStrings(empty, alternatives.Count == 0 ? null : GrammarExpr.Choice(alternatives));
    }

    // The bounds left for the digits after `digit`; false when `digit` already breaks one.
    private static bool Step(FractionBound? lo, FractionBound? hi, int digit, out FractionBound? nextLo, out FractionBound? nextHi)
    {
        nextLo = null;
        nextHi = null;
        if (lo is not null)
        {
            int first = lo.Digits.Length == 0 ? 0 : lo.Digits[0] - '0';
            if (digit < first)
            {
                return false;
            }

            nextLo = digit == first ? new FractionBound(lo.Digits.Length == 0 ? "" : lo.Digits[1..], lo.Exclusive) : null;
        }

        if (hi is not null)
        {
            int first = hi.Digits[0] - '0';
            if (digit > first)
            {
                return false;
            }

            nextHi = digit == first ? new FractionBound(hi.Digits[1..], hi.Exclusive) : null;
        }

        return true;
    }

    // Digit strings with a digit other than zero: 0*[1-9][0-9]*, at most `room` long.
    private static GrammarExpr AboveZero(int? room)
    {
        var nonZero = new ByteSetExpr(ByteSet.Range((byte)'1', (byte)'9'));
        if (room is not { } r)
        {
            return GrammarExpr.Sequence(GrammarExpr.Star(GrammarExpr.Literal("0")), nonZero, GrammarExpr.Star(Digit));
        }

        GrammarExpr expr = nonZero;
        for (int length = 2; length <= r; length++)
        {
            expr = GrammarExpr.Choice(GrammarExpr.Sequence(nonZero, GrammarExpr.Repeat(Digit, 0, length - 1)), GrammarExpr.Sequence(GrammarExpr.Literal("0"), expr));
        }

        return expr;
    }

    // Integers from lo (>= 0) to hi (null: unbounded) without sign or leading zeros, one span per digit count.
    private static GrammarExpr Magnitudes(BigInteger lo, BigInteger? hi)
    {
        string low = lo.ToString(CultureInfo.InvariantCulture);
        var alternatives = new List<GrammarExpr>();
        if (hi is not { } h)
        {
            alternatives.Add(SameLength(low, new string('9', low.Length)));
            alternatives.Add(GrammarExpr.Sequence(new ByteSetExpr(ByteSet.Range((byte)'1', (byte)'9')), GrammarExpr.Repeat(Digit, low.Length, null)));
            return GrammarExpr.Choice(alternatives);
        }

        string high = h.ToString(CultureInfo.InvariantCulture);
        for (int length = low.Length; length <= high.Length; length++)
        {
            string from = length == low.Length ? low : "1" + new string('0', length - 1);
            string to = length == high.Length ? high : new string('9', length);
            alternatives.Add(SameLength(from, to));
        }

        return GrammarExpr.Choice(alternatives);
    }

    // Digit strings of one length from `from` to `to`: a shared prefix, then the first differing digit splits the
    // span into "from's digit, then at least from's rest", "a digit between, then anything", "to's digit, then at
    // most to's rest" (a side whose rest is all 0s or all 9s joins the middle).
    public static GrammarExpr SameLength(string from, string to)
    {
        if (from.Length == 0)
        {
            return GrammarExpr.Empty;
        }

        if (from[0] == to[0])
        {
            return GrammarExpr.Sequence(GrammarExpr.Literal(from[..1]), SameLength(from[1..], to[1..]));
        }

        string fromRest = from[1..], toRest = to[1..];
        bool fromRestLowest = fromRest.All(c => c == '0'), toRestHighest = toRest.All(c => c == '9');
        var alternatives = new List<GrammarExpr>();
        if (!fromRestLowest)
        {
            alternatives.Add(GrammarExpr.Sequence(GrammarExpr.Literal(from[..1]), SameLength(fromRest, new string('9', fromRest.Length))));
        }

        char middleLow = fromRestLowest ? from[0] : (char)(from[0] + 1), middleHigh = toRestHighest ? to[0] : (char)(to[0] - 1);
        if (middleLow <= middleHigh)
        {
            alternatives.Add(GrammarExpr.Sequence(new ByteSetExpr(ByteSet.Range((byte)middleLow, (byte)middleHigh)), GrammarExpr.Repeat(Digit, fromRest.Length, fromRest.Length)));
        }

        if (!toRestHighest)
        {
            alternatives.Add(GrammarExpr.Sequence(GrammarExpr.Literal(to[..1]), SameLength(new string('0', toRest.Length), toRest)));
        }

        return GrammarExpr.Choice(alternatives);
    }

    private static GrammarExpr Literal(BigInteger value) => GrammarExpr.Literal(value.ToString(CultureInfo.InvariantCulture));
}
