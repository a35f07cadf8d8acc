namespace Celer.Grammars;

/// <summary>Character classes and escapes: each becomes a set of code point ranges.</summary>
internal sealed partial class RegexGrammarParser
{
    // ECMAScript's ASCII meanings of \d and \w (Python's str patterns would take Unicode digits and letters too).
    private static readonly (int Lo, int Hi)[] Digits = [('0', '9')];
    private static readonly (int Lo, int Hi)[] WordChars = [('0', '9'), ('A', 'Z'), ('_', '_'), ('a', 'z')];

    // ECMAScript's \s: WhiteSpace (TAB, VT, FF, ZWNBSP and every Zs space) plus LineTerminator (LF, CR, LS, PS).
    private static readonly (int Lo, int Hi)[] Spaces =
    [
        ('\t', '\r'), (' ', ' '), (0xA0, 0xA0), (0x1680, 0x1680), (0x2000, 0x200A), (0x2028, 0x2029), (0x202F, 0x202F),
        (0x205F, 0x205F), (0x3000, 0x3000), (0xFEFF, 0xFEFF),
    ];

    private GrammarExpr ParseClass()
    {
        int open = _pos++;
        bool negated = Eat('^');
        if (!AtEnd && _pattern[_pos] == ']')
        {
            // ECMAScript reads "[]" as the empty class and "[^]" as any character; Python reads the ']' as a literal.
            throw Fail(open, $"empty character class '{(negated ? "[^]" : "[]")}' means different things in ECMAScript and Python; write '\\]' for a literal ']'");
        }

        var ranges = new List<(int Lo, int Hi)>();
        while (true)
        {
            if (AtEnd)
            {
                throw Fail(open, "unterminated character class '['");
            }

            if (Eat(']'))
            {
                break;
            }

            int itemStart = _pos;
            var lo = ParseClassItem(out bool loIsSet);
            bool isRange = _pos + 1 < _pattern.Length && _pattern[_pos] == '-' && _pattern[_pos + 1] != ']';
            if (!isRange)
            {
                ranges.AddRange(lo);
                continue;
            }

            _pos++;
            var hi = ParseClassItem(out bool hiIsSet);
            if (loIsSet || hiIsSet)
            {
                throw Fail(itemStart, $"range '{_pattern[itemStart.._pos]}' has a class shorthand as an end point");
            }

            if (lo[0].Lo > hi[0].Lo)
            {
                throw Fail(itemStart, $"range '{_pattern[itemStart.._pos]}' is out of order");
            }

            ranges.Add((lo[0].Lo, hi[0].Lo));
        }

        return negated ? Utf8Ranges.Complement(ranges) : Utf8Ranges.Expr(ranges);
    }

    // One code point, or a shorthand's set (isSet), inside a class.
    private List<(int Lo, int Hi)> ParseClassItem(out bool isSet)
    {
        if (_pattern[_pos] == '\\')
        {
            return ParseEscape(inClass: true, out isSet);
        }

        if (_pattern.AsSpan(_pos).StartsWith("[:") && PosixClassEnd() is int end)
        {
            throw Fail(_pos, $"POSIX class '{_pattern[_pos..end]}' is not supported; write its ranges, e.g. 'a-zA-Z' for [:alpha:]");
        }

        isSet = false;
        int cp = ReadCodePoint();
        return [(cp, cp)];
    }

    // The end of "[:name:]" at _pos, or null when '[' and ':' are just two characters of the class.
    private int? PosixClassEnd()
    {
        int p = _pos + 2;
        while (p < _pattern.Length && char.IsAsciiLetterLower(_pattern[p]))
        {
            p++;
        }

        return p > _pos + 2 && _pattern.AsSpan(p).StartsWith(":]") ? p + 2 : null;
    }

    // The escape at _pos ('\'): a shorthand's set (isSet), or the one code point it stands for.
    private List<(int Lo, int Hi)> ParseEscape(bool inClass, out bool isSet)
    {
        int start = _pos++;
        if (AtEnd)
        {
            throw Fail(start, "the pattern ends with a lone '\\'");
        }

        isSet = true;
        char c = _pattern[_pos++];
        switch (c)
        {
            case 'd': return [.. Digits];
            case 'D': return Utf8Ranges.ComplementRanges(Digits);
            case 'w': return [.. WordChars];
            case 'W': return Utf8Ranges.ComplementRanges(WordChars);
            case 's': return [.. Spaces];
            case 'S': return Utf8Ranges.ComplementRanges(Spaces);
        }

        isSet = false;
        if (!char.IsAsciiLetterOrDigit(c))
        {
            // An escaped metacharacter, or any other non-word character, stands for itself in both dialects.
            _pos--;
            int literal = ReadCodePoint();
            return [(literal, literal)];
        }

        int cp = c switch
        {
            't' => '\t',
            'n' => '\n',
            'r' => '\r',
            'f' => '\f',
            'v' => '\v',
            '0' when AtEnd || !char.IsAsciiDigit(_pattern[_pos]) => 0,
            'x' => ReadHex(start, 2),
            'u' => Eat('{') ? ReadBracedCodePoint(start) : ReadUtf16Escape(start),
            // Inside a class \b is backspace in both dialects; outside it is a word boundary.
            'b' when inClass => '\b',
            _ => throw Fail(start, RefusedEscape(c, inClass)),
        };
        return [(cp, cp)];
    }

    private static string RefusedEscape(char c, bool inClass)
    {
        string escape = $"'\\{c}'";
        return c switch
        {
            >= '0' and <= '9' when inClass || c == '0' => $"octal escape {escape} is not supported; write '\\xHH'",
            >= '1' and <= '9' => $"backreference {escape} is not supported",
            'k' => "backreference '\\k<name>' is not supported",
            'b' or 'B' => $"word boundary {escape} is not supported",
            'p' or 'P' => $"Unicode property {escape} is not supported; write the ranges as a character class",
            'A' or 'Z' or 'z' or 'G' => $"anchor {escape} is not supported; write '^' or '$'",
            _ => $"unknown escape {escape}",
        };
    }

    // Exactly `count` hex digits after "\x" or "\u".
    private int ReadHex(int start, int count) => HexDigits.TryRead(_pattern, ref _pos, count, out long value)
        ? (int)value
        : throw Fail(start, $"malformed '\\{_pattern[start + 1]}' escape (expected {count} hex digits)");

    // "\uHHHH", where a high surrogate followed by "\uHHHH" with a low one is one code point (as ECMAScript's u flag).
    private int ReadUtf16Escape(int start)
    {
        int unit = ReadHex(start, 4);
        if (char.IsHighSurrogate((char)unit) && _pattern.AsSpan(_pos).StartsWith("\\u"))
        {
            int save = _pos;
            _pos += 2;
            int low = ReadHex(_pos - 2, 4);
            if (char.IsLowSurrogate((char)low))
            {
                return char.ConvertToUtf32((char)unit, (char)low);
            }

            _pos = save;
        }

        if (char.IsSurrogate((char)unit))
        {
            throw Fail(start, $"lone surrogate '\\u{unit:X4}' is not a character");
        }

        return unit;
    }

    // "\u{H...}" (ECMAScript's u flag): 1 to 6 hex digits, a scalar value.
    private int ReadBracedCodePoint(int start)
    {
        int value = 0;
        int digits = 0;
        while (!AtEnd && HexDigits.Value(_pattern[_pos]) is >= 0 and var digit && digits < 6)
        {
            value = value * 16 + digit;
            digits++;
            _pos++;
        }

        if (digits == 0 || !Eat('}'))
        {
            throw Fail(start, "malformed '\\u{...}' escape (expected 1 to 6 hex digits and '}')");
        }

        if (value > Utf8Ranges.MaxCodePoint)
        {
            throw Fail(start, $"'{_pattern[start.._pos]}' is above U+10FFFF");
        }

        if (value is >= 0xD800 and <= 0xDFFF)
        {
            throw Fail(start, $"lone surrogate '{_pattern[start.._pos]}' is not a character");
        }

        return value;
    }

}
