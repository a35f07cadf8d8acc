using System.Text;

namespace Celer.Tokenization;

/// <summary>
/// The character classes of BERT's basic tokenizer as HF tokenizers defines them (normalizers/bert.rs,
/// pre_tokenizers/bert.rs). Categories come from the Unicode 8.0 tables HF uses (see
/// tools/tokenizers/generate_bert_character_tables.py), not from .NET's newer ones; whitespace is Rust's
/// <c>char::is_whitespace</c>, whose set has not changed since Unicode 6.3.
/// </summary>
internal static partial class BertCharacters
{
    /// <summary>Rust's <c>char::is_whitespace</c> (White_Space), plus \t \n \r, which it already has.</summary>
    public static bool IsWhitespace(int c) => c switch
    {
        >= 0x9 and <= 0xD or 0x20 or 0x85 or 0xA0 or 0x1680 or >= 0x2000 and <= 0x200A
            or 0x2028 or 0x2029 or 0x202F or 0x205F or 0x3000 => true,
        _ => false,
    };

    /// <summary>
    /// HF's <c>is_control</c>: Cc, Cf or Co ("other" less unassigned), except \t \n \r, which count as whitespace.
    /// </summary>
    public static bool IsControl(int c)
    {
        if (c is '\t' or '\n' or '\r') return false;
        if (c is >= 0xE000 and <= 0xF8FF or >= 0xF0000 and <= 0xFFFFD or >= 0x100000 and <= 0x10FFFD) return true;
        return InRanges(c, ControlAndFormatRanges);
    }

    /// <summary>HF's <c>is_chinese_char</c>: the CJK Unified Ideographs blocks (not Hangul, kana or CJK punctuation).</summary>
    public static bool IsChineseChar(int c) => c is >= 0x4E00 and <= 0x9FFF or >= 0x3400 and <= 0x4DBF
        or >= 0x20000 and <= 0x2A6DF or >= 0x2A700 and <= 0x2B73F or >= 0x2B740 and <= 0x2B81F
        or >= 0x2B920 and <= 0x2CEAF or >= 0xF900 and <= 0xFAFF or >= 0x2F800 and <= 0x2FA1F;

    /// <summary>HF's <c>is_bert_punc</c>: ASCII punctuation (which includes $ + &lt; = &gt; ^ ` | ~) or a P* category.</summary>
    public static bool IsPunctuation(int c)
    {
        if (c < 0x80) return c is >= '!' and <= '/' or >= ':' and <= '@' or >= '[' and <= '`' or >= '{' and <= '~';
        return InRanges(c, PunctuationRanges);
    }

    /// <summary>Mn, what <c>strip_accents</c> drops after NFD.</summary>
    public static bool IsNonspacingMark(int c) => c >= 0x300 && InRanges(c, NonspacingMarkRanges);

    /// <summary>Binary search over sorted inclusive [first, last] pairs.</summary>
    private static bool InRanges(int c, ReadOnlySpan<int> ranges)
    {
        int lo = 0, hi = ranges.Length / 2 - 1;
        while (lo <= hi)
        {
            int mid = (lo + hi) >>> 1;
            if (c < ranges[2 * mid]) hi = mid - 1;
            else if (c > ranges[2 * mid + 1]) lo = mid + 1;
            else return true;
        }
        return false;
    }

    /// <summary>
    /// The code point at <paramref name="index"/> and its UTF-16 length. A lone surrogate reads as U+FFFD, which is
    /// what it becomes on the way to UTF-8 (and so to HF, whose strings cannot hold one).
    /// </summary>
    public static int CodePointAt(string text, int index, out int length)
    {
        Rune.DecodeFromUtf16(text.AsSpan(index), out var rune, out length);
        return rune.Value;
    }
}
