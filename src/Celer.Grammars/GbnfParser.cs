using System.Text;

namespace Celer.Grammars;

/// <summary>
/// Recursive-descent parser for GBNF. As in llama.cpp, a newline ends a rule except inside parentheses or after '|',
/// and '#' starts a comment. Unlike llama.cpp, a rule defined twice is an error rather than silently replaced, and
/// bounds are held to the regex limit. Positions in errors are 1-based lines and columns.
/// </summary>
internal sealed class GbnfParser
{
    // Parentheses nest this deep at most, so a hostile grammar is a 400 and not a stack overflow.
    private const int MaxNesting = RegexGrammarParser.MaxNesting;

    private readonly string _text;
    private readonly GrammarBuilder _builder = new();
    private readonly Dictionary<string, int> _rules = new(StringComparer.Ordinal);
    private readonly Dictionary<int, int> _definedAt = [];
    private readonly Dictionary<int, int> _firstUsedAt = [];
    private int _pos;
    private int _depth;

    private GbnfParser(string text) => _text = text;

    internal static Grammar Parse(string text) => new GbnfParser(text).ParseGrammar();

    private bool AtEnd => _pos >= _text.Length;

    private Grammar ParseGrammar()
    {
        SkipSpace(newlines: true);
        while (!AtEnd)
        {
            ParseRule();
        }

        foreach (var (rule, offset) in _firstUsedAt.OrderBy(u => u.Value))
        {
            if (!_definedAt.ContainsKey(rule))
            {
                throw Fail(offset, $"rule '{_builder.NameOf(rule)}' is used but never defined");
            }
        }

        if (!_rules.TryGetValue("root", out int root))
        {
            throw new GrammarException("GBNF grammar has no 'root' rule (the rule the whole output must match).");
        }

        return _builder.Build(root);
    }

    private void ParseRule()
    {
        int start = _pos;
        string name = ReadName() ?? throw Fail(_pos, $"expected a rule name, found {Found()}");
        SkipSpace(newlines: false);
        if (!_text.AsSpan(_pos).StartsWith("::="))
        {
            throw Fail(_pos, $"expected '::=' after rule name '{name}', found {Found()}");
        }

        int rule = RuleId(name);
        if (_definedAt.TryGetValue(rule, out int earlier))
        {
            throw Fail(start, $"rule '{name}' is defined twice (first at {Where(earlier)})");
        }

        _definedAt[rule] = start;
        _pos += 3;
        SkipSpace(newlines: true);
        var body = ParseAlternatives(nested: false);
        if (!AtEnd && _text[_pos] is not ('\r' or '\n'))
        {
            throw Fail(_pos, _text[_pos] == ')' ? "unbalanced ')'" : $"unexpected {Found()} in rule '{name}'");
        }

        _builder.Define(rule, body);
        SkipSpace(newlines: true);
    }

    private GrammarExpr ParseAlternatives(bool nested)
    {
        var alternatives = new List<GrammarExpr> { ParseSequence(nested) };
        while (Eat('|'))
        {
            // A newline after '|' continues the rule, even outside parentheses.
            SkipSpace(newlines: true);
            alternatives.Add(ParseSequence(nested));
        }

        return GrammarExpr.Choice(alternatives);
    }

    private GrammarExpr ParseSequence(bool nested)
    {
        var items = new List<GrammarExpr>();
        while (!AtEnd)
        {
            char c = _text[_pos];
            if (c is '*' or '+' or '?' or '{')
            {
                if (items.Count == 0)
                {
                    throw Fail(_pos, $"quantifier '{c}' has nothing to repeat");
                }

                items[^1] = ParseQuantifier(items[^1]);
            }
            else if (ParseItem() is { } item)
            {
                items.Add(item);
            }
            else
            {
                break;
            }

            SkipSpace(newlines: nested);
        }

        return GrammarExpr.Sequence(items);
    }

    // A string, class, '.', group or rule reference at _pos; null when nothing of the kind starts there.
    private GrammarExpr? ParseItem()
    {
        int start = _pos;
        switch (_text[_pos])
        {
            case '"':
                return ParseLiteral();
            case '[':
                return ParseClass();
            case '.':
                _pos++;
                return Utf8Ranges.Any();
            case '(':
                return ParseGroup();
            case '<' or '!':
                throw Fail(start, $"token reference '{TokenText()}' is not supported (llama.cpp's token syntax names one tokenizer's ids; write the text as a string)");
            default:
                return ReadName() is { } name ? new RuleRefExpr(Use(name, start)) : null;
        }
    }

    private GrammarExpr ParseGroup()
    {
        int open = _pos++;
        if (++_depth > MaxNesting)
        {
            throw Fail(open, $"parentheses nest deeper than {MaxNesting}");
        }

        SkipSpace(newlines: true);
        var body = ParseAlternatives(nested: true);
        if (AtEnd)
        {
            throw Fail(open, "unbalanced '('");
        }

        if (!Eat(')'))
        {
            throw Fail(_pos, $"expected ')' to close the '(' at {Where(open)}, found {Found()}");
        }

        _depth--;
        return body;
    }

    private GrammarExpr ParseQuantifier(GrammarExpr item)
    {
        int start = _pos;
        switch (_text[_pos++])
        {
            case '*':
                return GrammarExpr.Star(item);
            case '+':
                return GrammarExpr.Plus(item);
            case '?':
                return GrammarExpr.Optional(item);
        }

        SkipSpace(newlines: false);
        int min = ReadInt() ?? throw Fail(_pos, $"expected a number after '{{', found {Found()}");
        int? max = min;
        SkipSpace(newlines: false);
        if (Eat(','))
        {
            SkipSpace(newlines: false);
            max = ReadInt();
            SkipSpace(newlines: false);
        }

        if (!Eat('}'))
        {
            throw Fail(_pos, $"expected '}}' to close the repetition at {Where(start)}, found {Found()}");
        }

        string text = _text[start.._pos];
        if (min > RegexGrammarParser.MaxRepetition || max > RegexGrammarParser.MaxRepetition)
        {
            throw Fail(start, $"repetition bound in '{text}' is above the limit of {RegexGrammarParser.MaxRepetition}");
        }

        if (max < min)
        {
            throw Fail(start, $"repetition '{text}' has its maximum below its minimum");
        }

        return GrammarExpr.Repeat(item, min, max);
    }

    private GrammarExpr ParseLiteral()
    {
        int open = _pos++;
        var text = new StringBuilder();
        while (!Eat('"'))
        {
            if (AtEnd)
            {
                throw Fail(open, "unterminated string");
            }

            text.Append(char.ConvertFromUtf32(ReadChar()));
        }

        return GrammarExpr.Literal(text.ToString());
    }

    private GrammarExpr ParseClass()
    {
        int open = _pos++;
        bool negated = Eat('^');
        var ranges = new List<(int Lo, int Hi)>();
        while (!Eat(']'))
        {
            if (AtEnd)
            {
                throw Fail(open, "unterminated character class '['");
            }

            int itemStart = _pos;
            int lo = ReadChar();
            int hi = lo;
            // As in llama.cpp, a '-' right before ']' is a literal '-', and so is one that starts the class.
            if (_pos + 1 < _text.Length && _text[_pos] == '-' && _text[_pos + 1] != ']')
            {
                _pos++;
                hi = ReadChar();
                if (hi < lo)
                {
                    throw Fail(itemStart, $"range '{_text[itemStart.._pos]}' is out of order");
                }
            }

            ranges.Add((lo, hi));
        }

        if (ranges.Count == 0)
        {
            throw Fail(open, $"empty character class '{(negated ? "[^]" : "[]")}'");
        }

        return negated ? Utf8Ranges.Complement(ranges) : Utf8Ranges.Expr(ranges);
    }

    // One code point of a string or class: itself, or an escape.
    private int ReadChar()
    {
        int start = _pos;
        if (_text[_pos] != '\\')
        {
            return ReadCodePoint();
        }

        if (_pos + 1 >= _text.Length)
        {
            throw Fail(start, "the grammar ends with a lone '\\'");
        }

        char escape = _text[_pos + 1];
        _pos += 2;
        long cp = escape switch
        {
            'x' => ReadHex(start, 2),
            'u' => ReadHex(start, 4),
            'U' => ReadHex(start, 8),
            't' => '\t',
            'r' => '\r',
            'n' => '\n',
            '\\' or '"' or '[' or ']' or '-' => escape,
            _ => throw Fail(start, $"unknown escape '\\{escape}'"),
        };
        if (cp > Utf8Ranges.MaxCodePoint || cp is >= 0xD800 and <= 0xDFFF)
        {
            throw Fail(start, $"'{_text[start.._pos]}' is not a Unicode scalar value");
        }

        return (int)cp;
    }

    private long ReadHex(int start, int count) => HexDigits.TryRead(_text, ref _pos, count, out long value)
        ? value
        : throw Fail(start, $"malformed '\\{_text[start + 1]}' escape (expected {count} hex digits)");

    private int ReadCodePoint()
    {
        char c = _text[_pos];
        if (char.IsHighSurrogate(c) && _pos + 1 < _text.Length && char.IsLowSurrogate(_text[_pos + 1]))
        {
            _pos += 2;
            return char.ConvertToUtf32(c, _text[_pos - 1]);
        }

        if (char.IsSurrogate(c))
        {
            throw Fail(_pos, $"lone surrogate U+{(int)c:X4} (the grammar is not valid UTF-16)");
        }

        _pos++;
        return c;
    }

    private int? ReadInt()
    {
        int start = _pos;
        int value = 0;
        while (!AtEnd && char.IsAsciiDigit(_text[_pos]))
        {
            // Held just past the limit, so a huge bound is reported, not overflowed.
            value = Math.Min(value * 10 + (_text[_pos] - '0'), RegexGrammarParser.MaxRepetition + 1);
            _pos++;
        }

        return _pos > start ? value : null;
    }

    private string? ReadName()
    {
        int start = _pos;
        while (!AtEnd && (char.IsAsciiLetterOrDigit(_text[_pos]) || _text[_pos] is '_' or '-'))
        {
            _pos++;
        }

        return _pos > start ? _text[start.._pos] : null;
    }

    private int RuleId(string name)
    {
        if (!_rules.TryGetValue(name, out int rule))
        {
            rule = _builder.Declare(name);
            _rules[name] = rule;
        }

        return rule;
    }

    private int Use(string name, int offset)
    {
        int rule = RuleId(name);
        _firstUsedAt.TryAdd(rule, offset);
        return rule;
    }

    private void SkipSpace(bool newlines)
    {
        while (!AtEnd)
        {
            char c = _text[_pos];
            if (c is ' ' or '\t' || (newlines && c is '\r' or '\n'))
            {
                _pos++;
            }
            else if (c == '#')
            {
                while (!AtEnd && _text[_pos] is not ('\r' or '\n'))
                {
                    _pos++;
                }
            }
            else
            {
                return;
            }
        }
    }

    private bool Eat(char c)
    {
        if (!AtEnd && _text[_pos] == c)
        {
            _pos++;
            return true;
        }

        return false;
    }

    // "<think>", "<[123]>" or "!<[7]>" at _pos, for the error message.
    private string TokenText()
    {
        int end = _text.IndexOf('>', _pos);
        return end < 0 || end - _pos > 40 ? _text[_pos..Math.Min(_text.Length, _pos + 10)] : _text[_pos..(end + 1)];
    }

    private string Found() => AtEnd ? "the end of the grammar" : _text[_pos] is '\r' or '\n' ? "a line break" : $"'{_text[_pos]}'";

    private string Where(int offset)
    {
        int line = 1;
        int lineStart = 0;
        for (int i = 0; i < offset; i++)
        {
            if (_text[i] == '\n')
            {
                line++;
                lineStart = i + 1;
            }
        }

        return $"line {line}, column {offset - lineStart + 1}";
    }

    private GrammarException Fail(int offset, string what) => new($"GBNF grammar, {Where(offset)}: {what}.");
}
