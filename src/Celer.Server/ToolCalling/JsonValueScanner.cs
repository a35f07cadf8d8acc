using System.Text;

namespace Celer.Server.ToolCalling;

/// <summary>
/// Reads one JSON value a character at a time, for tool-call arguments that stream: it knows where the value ends without
/// waiting for more text, and writes it out re-spaced the way Python's <c>json.dumps</c> separates items (<c>", "</c> and
/// <c>": "</c>, no other whitespace outside strings), which is how vLLM's parsers print arguments. Strings, numbers and
/// literals are written as the model wrote them, so the output only ever grows: every prefix of it is a prefix of the
/// final text. A raw control character inside a string (a newline models often write) is escaped rather than refused.
/// </summary>
internal sealed class JsonValueScanner(StringBuilder? output) : IValueScanner
{
    private enum State
    {
        Value,
        ArrayValueOrEnd,
        ObjectKeyOrEnd,
        ObjectKey,
        Colon,
        AfterValue,
        String,
        StringEscape,
        StringUnicode,
        Number,
        Literal,
        Done,
    }

    // JSON's number grammar: -? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?
    private enum NumberState
    {
        Minus,
        Zero,
        Integer,
        Point,
        Fraction,
        Exponent,
        ExponentSign,
        ExponentDigits,
    }

    private readonly Stack<bool> _containers = new(); // true: object, false: array
    private State _state = State.Value;
    private NumberState _number;
    private string _literal = "";
    private int _literalPos;
    private int _unicodeDigits;
    private bool _stringIsKey;

    public ScanStatus Feed(char c)
    {
        switch (_state)
        {
            case State.Done:
                return ScanStatus.Error;

            case State.Value:
                if (IsWhitespace(c))
                    return ScanStatus.NeedMore;
                return BeginValue(c);

            case State.ArrayValueOrEnd:
                if (IsWhitespace(c))
                    return ScanStatus.NeedMore;
                if (c == ']')
                    return CloseContainer(']');
                _state = State.Value;
                return BeginValue(c);

            case State.ObjectKeyOrEnd:
            case State.ObjectKey:
                if (IsWhitespace(c))
                    return ScanStatus.NeedMore;
                if (c == '}' && _state == State.ObjectKeyOrEnd)
                    return CloseContainer('}');
                if (c != '"')
                    return ScanStatus.Error;
                _stringIsKey = true;
                _state = State.String;
                output?.Append('"');
                return ScanStatus.NeedMore;

            case State.Colon:
                if (IsWhitespace(c))
                    return ScanStatus.NeedMore;
                if (c != ':')
                    return ScanStatus.Error;
                output?.Append(": ");
                _state = State.Value;
                return ScanStatus.NeedMore;

            case State.AfterValue:
                if (IsWhitespace(c))
                    return ScanStatus.NeedMore;
                bool inObject = _containers.Peek();
                if (c == ',')
                {
                    output?.Append(", ");
                    _state = inObject ? State.ObjectKey : State.Value;
                    return ScanStatus.NeedMore;
                }
                return c == (inObject ? '}' : ']') ? CloseContainer(c) : ScanStatus.Error;

            case State.String:
                if (c == '"')
                {
                    output?.Append('"');
                    if (_stringIsKey)
                    {
                        _stringIsKey = false;
                        _state = State.Colon;
                        return ScanStatus.NeedMore;
                    }
                    return EndValue();
                }
                if (c == '\\')
                {
                    _state = State.StringEscape;
                    return ScanStatus.NeedMore;
                }
                if (c < ' ')
                    JsonText.AppendEscaped(output, c);
                else
                    output?.Append(c);
                return ScanStatus.NeedMore;

            case State.StringEscape:
                if (c is '"' or '\\' or '/' or 'b' or 'f' or 'n' or 'r' or 't')
                {
                    output?.Append('\\').Append(c);
                    _state = State.String;
                    return ScanStatus.NeedMore;
                }
                if (c != 'u')
                    return ScanStatus.Error;
                output?.Append("\\u");
                _unicodeDigits = 0;
                _state = State.StringUnicode;
                return ScanStatus.NeedMore;

            case State.StringUnicode:
                if (!char.IsAsciiHexDigit(c))
                    return ScanStatus.Error;
                output?.Append(c);
                if (++_unicodeDigits == 4)
                    _state = State.String;
                return ScanStatus.NeedMore;

            case State.Number:
                return FeedNumber(c);

            case State.Literal:
                if (c != _literal[_literalPos])
                    return ScanStatus.Error;
                output?.Append(c);
                return ++_literalPos == _literal.Length ? EndValue() : ScanStatus.NeedMore;

            default:
                return ScanStatus.Error;
        }
    }

    /// <summary>The end of the text: a top-level number needs no delimiter after it. False when the value is unfinished.</summary>
    public bool Finish()
    {
        if (_state == State.Number && _containers.Count == 0 && NumberCanEnd)
            _state = State.Done;
        return _state == State.Done;
    }

    private ScanStatus BeginValue(char c)
    {
        switch (c)
        {
            case '{' or '[':
                if (_containers.Count == ValueScanners.MaxDepth)
                    return ScanStatus.Error;
                _containers.Push(c == '{');
                output?.Append(c);
                _state = c == '{' ? State.ObjectKeyOrEnd : State.ArrayValueOrEnd;
                return ScanStatus.NeedMore;
            case '"':
                output?.Append('"');
                _state = State.String;
                return ScanStatus.NeedMore;
            case '-':
                _number = NumberState.Minus;
                break;
            case '0':
                _number = NumberState.Zero;
                break;
            case >= '1' and <= '9':
                _number = NumberState.Integer;
                break;
            case 't' or 'f' or 'n':
                _literal = c == 't' ? "true" : c == 'f' ? "false" : "null";
                _literalPos = 1;
                _state = State.Literal;
                output?.Append(c);
                return ScanStatus.NeedMore;
            default:
                return ScanStatus.Error;
        }
        output?.Append(c);
        _state = State.Number;
        return ScanStatus.NeedMore;
    }

    private bool NumberCanEnd => _number is NumberState.Zero or NumberState.Integer or NumberState.Fraction or NumberState.ExponentDigits;

    private ScanStatus FeedNumber(char c)
    {
        NumberState? next = (_number, c) switch
        {
            (NumberState.Minus, '0') => NumberState.Zero,
            (NumberState.Minus, >= '1' and <= '9') => NumberState.Integer,
            (NumberState.Integer, >= '0' and <= '9') => NumberState.Integer,
            (NumberState.Zero or NumberState.Integer, '.') => NumberState.Point,
            (NumberState.Point or NumberState.Fraction, >= '0' and <= '9') => NumberState.Fraction,
            (NumberState.Zero or NumberState.Integer or NumberState.Fraction, 'e' or 'E') => NumberState.Exponent,
            (NumberState.Exponent, '+' or '-') => NumberState.ExponentSign,
            (NumberState.Exponent or NumberState.ExponentSign or NumberState.ExponentDigits, >= '0' and <= '9') => NumberState.ExponentDigits,
            _ => null,
        };
        if (next is { } state)
        {
            _number = state;
            output?.Append(c);
            return ScanStatus.NeedMore;
        }
        if (!NumberCanEnd)
            return ScanStatus.Error;
        // The character after a number belongs to what follows it.
        if (EndValue() == ScanStatus.Complete)
            return ScanStatus.CompleteBefore;
        return Feed(c);
    }

    private ScanStatus CloseContainer(char c)
    {
        output?.Append(c);
        _containers.Pop();
        return EndValue();
    }

    private ScanStatus EndValue()
    {
        if (_containers.Count == 0)
        {
            _state = State.Done;
            return ScanStatus.Complete;
        }
        _state = State.AfterValue;
        return ScanStatus.NeedMore;
    }

    private static bool IsWhitespace(char c) => c is ' ' or '\t' or '\n' or '\r';
}

/// <summary>JSON text written the way Python's <c>json.dumps(..., ensure_ascii=False)</c> writes it, as vLLM's parsers do.</summary>
internal static class JsonText
{
    /// <summary>A JSON string literal: quotes, backslashes and control characters escaped, everything else as it is.</summary>
    public static string Quote(ReadOnlySpan<char> text)
    {
        var sb = new StringBuilder(text.Length + 2);
        sb.Append('"');
        AppendEscaped(sb, text);
        sb.Append('"');
        return sb.ToString();
    }

    public static void AppendEscaped(StringBuilder? sb, ReadOnlySpan<char> text)
    {
        foreach (var c in text)
            AppendEscaped(sb, c);
    }

    public static void AppendEscaped(StringBuilder? sb, char c)
    {
        if (sb is null)
            return;
        string? escape = c switch
        {
            '"' => "\\\"",
            '\\' => "\\\\",
            '\n' => "\\n",
            '\r' => "\\r",
            '\t' => "\\t",
            '\b' => "\\b",
            '\f' => "\\f",
            _ => null,
        };
        if (escape is not null)
            sb.Append(escape);
        else if (c < ' ')
            sb.Append("\\u").Append(((int)c).ToString("x4", System.Globalization.CultureInfo.InvariantCulture));
        else
            sb.Append(c);
    }

    /// <summary>
    /// Re-spaces a complete JSON text the way <see cref="JsonValueScanner"/> does, or null when it is not one JSON value.
    /// </summary>
    public static string? Normalize(ReadOnlySpan<char> json)
    {
        var sb = new StringBuilder(json.Length);
        return ValueScanners.ReadWhole(new JsonValueScanner(sb), sb, json);
    }
}
