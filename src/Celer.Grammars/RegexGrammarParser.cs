namespace Celer.Grammars;

/// <summary>
/// Recursive-descent parser for the regular expressions JSON schemas and vLLM's <c>regex</c> outputs are written in:
/// the common subset of ECMAScript and Python <c>re</c>, over Unicode code points. Each atom becomes a byte-level
/// <see cref="GrammarExpr"/> at once (a character class is one <see cref="Utf8Ranges"/> expression). Whatever is not
/// a regular language (backreferences, lookaround, word boundaries) or means different things in the two dialects is
/// refused with a <see cref="GrammarException"/> that names the construct and its offset.
/// </summary>
internal sealed partial class RegexGrammarParser
{
    // The largest {n,m} bound: the matcher expands bounded repetition into copies, so a bound is a size.
    internal const int MaxRepetition = 10000;

    // Groups nest this deep at most, so a hostile pattern is a 400 and not a stack overflow of this recursive parser.
    internal const int MaxNesting = 200;

    private readonly string _pattern;
    private int _pos;
    private int _depth;

    private RegexGrammarParser(string pattern) => _pattern = pattern;

    /// <summary>One top-level alternative, and whether a leading '^' or trailing '$' anchored it.</summary>
    internal readonly record struct Branch(GrammarExpr Body, bool AnchoredStart, bool AnchoredEnd);

    internal static List<Branch> Parse(string pattern) => new RegexGrammarParser(pattern).ParseBranches();

    private bool AtEnd => _pos >= _pattern.Length;

    private List<Branch> ParseBranches()
    {
        var branches = new List<Branch>();
        while (true)
        {
            bool anchoredStart = Eat('^');
            var body = ParseSequence(topLevel: true);
            bool anchoredEnd = Eat('$');
            branches.Add(new Branch(body, anchoredStart, anchoredEnd));
            if (AtEnd)
            {
                return branches;
            }

            if (!Eat('|'))
            {
                // A top-level sequence stops only at '|', a final '$', the end, or a ')' that closes nothing.
                throw Fail(_pos, "unbalanced ')'");
            }
        }
    }

    private GrammarExpr ParseAlternation()
    {
        var alternatives = new List<GrammarExpr> { ParseSequence(topLevel: false) };
        while (Eat('|'))
        {
            alternatives.Add(ParseSequence(topLevel: false));
        }

        return GrammarExpr.Choice(alternatives);
    }

    private GrammarExpr ParseSequence(bool topLevel)
    {
        var items = new List<GrammarExpr>();
        while (!AtEnd)
        {
            char c = _pattern[_pos];
            if (c is '|' or ')')
            {
                break;
            }

            if (c == '$')
            {
                if (topLevel && (_pos + 1 == _pattern.Length || _pattern[_pos + 1] == '|'))
                {
                    break;
                }

                throw Fail(_pos, "anchor '$' is only supported at the end of the pattern or of a top-level alternative");
            }

            if (c == '^')
            {
                throw Fail(_pos, "anchor '^' is only supported at the start of the pattern or of a top-level alternative");
            }

            items.Add(ParseQuantified(ParseAtom()));
        }

        return GrammarExpr.Sequence(items);
    }

    private GrammarExpr ParseAtom()
    {
        int start = _pos;
        switch (_pattern[_pos])
        {
            case '(':
                return ParseGroup();
            case '[':
                return ParseClass();
            case '.':
                _pos++;
                return Utf8Ranges.Complement([('\n', '\n')]);
            case '\\':
                return Utf8Ranges.Expr(ParseEscape(inClass: false, out _));
            case '*' or '+' or '?':
                throw Fail(start, $"quantifier '{_pattern[start]}' has nothing to repeat");
            case '{' when TryReadBounds(out _, out _):
                throw Fail(start, $"quantifier '{_pattern[start.._pos]}' has nothing to repeat");
            default:
                // Everything else, '{', '}' and ']' included (as in both dialects), stands for itself.
                int cp = ReadCodePoint();
                return Utf8Ranges.Expr([(cp, cp)]);
        }
    }

    private GrammarExpr ParseQuantified(GrammarExpr atom)
    {
        if (!TryReadQuantifier(out int min, out int? max))
        {
            return atom;
        }

        // A lazy quantifier ('*?') changes which match a search reports, never whether the text matches. A possessive
        // one ('*+') never gives back what it took; read as greedy it has the same language whenever what follows
        // cannot start with what it repeats ('[a-z]*+,'), and a larger one otherwise ('a*+a' matches nothing in PCRE).
        if (!AtEnd && _pattern[_pos] is '?' or '+')
        {
            _pos++;
        }

        int next = _pos;
        if (TryReadQuantifier(out _, out _))
        {
            throw Fail(next, $"nested quantifier '{_pattern[next.._pos]}' (a quantifier cannot follow another)");
        }

        return GrammarExpr.Repeat(atom, min, max);
    }

    private bool TryReadQuantifier(out int min, out int? max)
    {
        (min, max) = (0, null);
        if (AtEnd)
        {
            return false;
        }

        switch (_pattern[_pos])
        {
            case '*':
                _pos++;
                return true;
            case '+':
                _pos++;
                min = 1;
                return true;
            case '?':
                _pos++;
                max = 1;
                return true;
            case '{':
                return TryReadBounds(out min, out max);
            default:
                return false;
        }
    }

    // "{n}", "{n,}" or "{n,m}" at _pos; anything else ('{', "{a}", "{1, 2}") is literal text in both dialects.
    private bool TryReadBounds(out int min, out int? max)
    {
        (min, max) = (0, null);
        int start = _pos;
        int p = start + 1;
        if (p < _pattern.Length && _pattern[p] == ',')
        {
            p++;
            if (ReadNumber(ref p) is not null && p < _pattern.Length && _pattern[p] == '}')
            {
                throw Fail(start, $"'{_pattern[start..(p + 1)]}' means {{0,m}} in Python but literal text in ECMAScript; write '{{0,m}}'");
            }

            return false;
        }

        if (ReadNumber(ref p) is not { } lo)
        {
            return false;
        }

        int? hi = lo;
        if (p < _pattern.Length && _pattern[p] == ',')
        {
            p++;
            hi = ReadNumber(ref p);
        }

        if (p >= _pattern.Length || _pattern[p] != '}')
        {
            return false;
        }

        string text = _pattern[start..(p + 1)];
        if (lo > MaxRepetition || hi > MaxRepetition)
        {
            throw Fail(start, $"repetition bound in '{text}' is above the limit of {MaxRepetition}");
        }

        if (hi < lo)
        {
            throw Fail(start, $"repetition '{text}' has its maximum below its minimum");
        }

        _pos = p + 1;
        (min, max) = (lo, hi);
        return true;
    }

    // Decimal digits at p, or null when there are none; values past the limit are held at MaxRepetition + 1.
    private int? ReadNumber(ref int p)
    {
        int start = p;
        int value = 0;
        while (p < _pattern.Length && char.IsAsciiDigit(_pattern[p]))
        {
            value = Math.Min(value * 10 + (_pattern[p] - '0'), MaxRepetition + 1);
            p++;
        }

        return p > start ? value : null;
    }

    private GrammarExpr ParseGroup()
    {
        int open = _pos++;
        if (++_depth > MaxNesting)
        {
            throw Fail(open, $"groups nest deeper than {MaxNesting}");
        }

        if (Eat('?'))
        {
            ReadGroupKind(open);
        }

        var body = ParseAlternation();
        if (!Eat(')'))
        {
            throw Fail(open, "unbalanced '('");
        }

        _depth--;
        return body;
    }

    // After "(?": accepts "(?:", "(?<name>" and "(?P<name>"; every other extension is named and refused.
    private void ReadGroupKind(int open)
    {
        if (Eat(':'))
        {
            return;
        }

        string rest = _pattern[_pos..];
        string? refused =
            rest.StartsWith("<=", StringComparison.Ordinal) ? "lookbehind '(?<='"
            : rest.StartsWith("<!", StringComparison.Ordinal) ? "negative lookbehind '(?<!'"
            : rest.StartsWith('=') ? "lookahead '(?='"
            : rest.StartsWith('!') ? "negative lookahead '(?!'"
            : rest.StartsWith("P=", StringComparison.Ordinal) ? "backreference '(?P=name)'"
            : rest.StartsWith('>') ? "atomic group '(?>'"
            : rest.StartsWith('#') ? "comment group '(?#'"
            : rest.StartsWith('(') ? "conditional group '(?('"
            : null;
        if (refused is not null)
        {
            throw Fail(open, refused + " is not supported");
        }

        if (Eat('<') || (rest.StartsWith("P<", StringComparison.Ordinal) && Eat('P') && Eat('<')))
        {
            ReadGroupName(open);
            return;
        }

        if (rest.Length > 0 && "aiLmsux-".Contains(rest[0], StringComparison.Ordinal))
        {
            throw Fail(open, $"inline flags '(?{rest[0]}' are not supported");
        }

        throw Fail(open, $"group construct '{_pattern[open..Math.Min(_pattern.Length, _pos + 1)]}' is not supported");
    }

    private void ReadGroupName(int open)
    {
        int start = _pos;
        while (!AtEnd && (char.IsAsciiLetterOrDigit(_pattern[_pos]) || _pattern[_pos] == '_'))
        {
            _pos++;
        }

        if (_pos == start || char.IsAsciiDigit(_pattern[start]) || !Eat('>'))
        {
            throw Fail(open, "malformed group name (expected letters, digits or '_' not starting with a digit, then '>')");
        }
    }

    private bool Eat(char c)
    {
        if (!AtEnd && _pattern[_pos] == c)
        {
            _pos++;
            return true;
        }

        return false;
    }

    private int ReadCodePoint()
    {
        char c = _pattern[_pos];
        if (char.IsHighSurrogate(c) && _pos + 1 < _pattern.Length && char.IsLowSurrogate(_pattern[_pos + 1]))
        {
            _pos += 2;
            return char.ConvertToUtf32(c, _pattern[_pos - 1]);
        }

        if (char.IsSurrogate(c))
        {
            throw Fail(_pos, $"lone surrogate U+{(int)c:X4} (the pattern is not valid UTF-16)");
        }

        _pos++;
        return c;
    }

    private GrammarException Fail(int offset, string what) => new($"Regex /{_pattern}/ at offset {offset}: {what}.");
}
