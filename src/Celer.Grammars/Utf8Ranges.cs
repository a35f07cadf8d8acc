namespace Celer.Grammars;

/// <summary>
/// Sets of Unicode code points as byte-level expressions: each range is split where its UTF-8 encoding changes
/// length, and then until every byte position of a piece is one contiguous byte range (the construction RE2 and
/// Rust's regex-syntax use), so "any code point in [lo, hi]" becomes a choice of sequences of byte sets. Surrogates
/// (U+D800–U+DFFF) are never produced: they are not valid in UTF-8.
/// </summary>
public static class Utf8Ranges
{
    public const int MaxCodePoint = 0x10FFFF;

    // The largest code point encoded in 1, 2, 3 and 4 bytes.
    private static readonly int[] LengthLimits = [0x7F, 0x7FF, 0xFFFF, MaxCodePoint];

    /// <summary>Any one code point of the ranges (inclusive pairs, any order, overlaps allowed).</summary>
    public static GrammarExpr Expr(IEnumerable<(int Lo, int Hi)> ranges)
    {
        var alternatives = new List<GrammarExpr>();
        foreach ((int lo, int hi) in Normalize(ranges))
        {
            foreach (var piece in SplitByLength(lo, hi))
            {
                Split(piece.Lo, piece.Hi, alternatives);
            }
        }

        return alternatives.Count == 0 ? new ByteSetExpr(ByteSet.Empty) : GrammarExpr.Choice(MergeSingleBytes(alternatives));
    }

    /// <summary>Any one code point outside the ranges.</summary>
    public static GrammarExpr Complement(IEnumerable<(int Lo, int Hi)> ranges) => Expr(ComplementRanges(ranges));

    /// <summary>Any one code point (not a surrogate).</summary>
    public static GrammarExpr Any() => Expr([(0, MaxCodePoint)]);

    /// <summary>Sorted, merged ranges, clipped to the code point space, surrogates removed.</summary>
    public static List<(int Lo, int Hi)> Normalize(IEnumerable<(int Lo, int Hi)> ranges)
    {
        var sorted = ranges.Select(r => (Lo: Math.Max(0, Math.Min(r.Lo, r.Hi)), Hi: Math.Min(MaxCodePoint, Math.Max(r.Lo, r.Hi))))
            .Where(r => r.Lo <= r.Hi).OrderBy(r => r.Lo).ToList();
        var merged = new List<(int Lo, int Hi)>();
        foreach (var r in sorted)
        {
            if (merged.Count > 0 && r.Lo <= merged[^1].Hi + 1)
            {
                merged[^1] = (merged[^1].Lo, Math.Max(merged[^1].Hi, r.Hi));
            }
            else
            {
                merged.Add(r);
            }
        }

        var result = new List<(int Lo, int Hi)>();
        foreach (var (lo, hi) in merged)
        {
            if (hi < 0xD800 || lo > 0xDFFF)
            {
                result.Add((lo, hi));
                continue;
            }

            if (lo < 0xD800)
            {
                result.Add((lo, 0xD7FF));
            }

            if (hi > 0xDFFF)
            {
                result.Add((0xE000, hi));
            }
        }

        return result;
    }

    public static List<(int Lo, int Hi)> ComplementRanges(IEnumerable<(int Lo, int Hi)> ranges)
    {
        var result = new List<(int Lo, int Hi)>();
        int next = 0;
        foreach (var (lo, hi) in Normalize(ranges))
        {
            if (lo > next)
            {
                result.Add((next, lo - 1));
            }

            next = hi + 1;
        }

        if (next <= MaxCodePoint)
        {
            result.Add((next, MaxCodePoint));
        }

        return Normalize(result);
    }

    private static IEnumerable<(int Lo, int Hi)> SplitByLength(int lo, int hi)
    {
        foreach (int max in LengthLimits)
        {
            if (lo > max)
            {
                continue;
            }

            yield return (lo, Math.Min(hi, max));
            if (hi <= max)
            {
                yield break;
            }

            lo = max + 1;
        }
    }

    // lo and hi encode to the same number of bytes here.
    private static void Split(int lo, int hi, List<GrammarExpr> output)
    {
        int length = EncodedLength(lo);
        for (int i = 1; i < length; i++)
        {
            int m = (1 << (6 * i)) - 1;
            if ((lo & ~m) != (hi & ~m))
            {
                if ((lo & m) != 0)
                {
                    Split(lo, lo | m, output);
                    Split((lo | m) + 1, hi, output);
                    return;
                }

                if ((hi & m) != m)
                {
                    Split(lo, (hi & ~m) - 1, output);
                    Split(hi & ~m, hi, output);
                    return;
                }
            }
        }

        Span<byte> a = stackalloc byte[4], b = stackalloc byte[4];
        Encode(lo, a);
        Encode(hi, b);
        var items = new GrammarExpr[length];
        for (int i = 0; i < length; i++)
        {
            items[i] = new ByteSetExpr(ByteSet.Range(a[i], b[i]));
        }

        output.Add(GrammarExpr.Sequence(items));
    }

    // The one-byte alternatives (ASCII ranges) as one byte set, so "[a-z0-9_]" is one transition, not three.
    private static List<GrammarExpr> MergeSingleBytes(List<GrammarExpr> alternatives)
    {
        var single = ByteSet.Empty;
        var result = new List<GrammarExpr>();
        foreach (var a in alternatives)
        {
            if (a is ByteSetExpr b)
            {
                single = single.Union(b.Set);
            }
            else
            {
                result.Add(a);
            }
        }

        if (!single.IsEmpty)
        {
            result.Insert(0, new ByteSetExpr(single));
        }

        return result;
    }

    private static int EncodedLength(int cp) => cp < 0x80 ? 1 : cp < 0x800 ? 2 : cp < 0x10000 ? 3 : 4;

    private static void Encode(int cp, Span<byte> bytes)
    {
        switch (EncodedLength(cp))
        {
            case 1:
                bytes[0] = (byte)cp;
                break;
            case 2:
                bytes[0] = (byte)(0xC0 | (cp >> 6));
                bytes[1] = (byte)(0x80 | (cp & 0x3F));
                break;
            case 3:
                bytes[0] = (byte)(0xE0 | (cp >> 12));
                bytes[1] = (byte)(0x80 | ((cp >> 6) & 0x3F));
                bytes[2] = (byte)(0x80 | (cp & 0x3F));
                break;
            default:
                bytes[0] = (byte)(0xF0 | (cp >> 18));
                bytes[1] = (byte)(0x80 | ((cp >> 12) & 0x3F));
                bytes[2] = (byte)(0x80 | ((cp >> 6) & 0x3F));
                bytes[3] = (byte)(0x80 | (cp & 0x3F));
                break;
        }
    }
}
