using System.Globalization;
using System.Numerics;
using System.Text;

namespace Celer.Server.ToolCalling;

/// <summary>
/// Reads one Python literal a character at a time (what <c>ast.literal_eval</c> accepts of strings in either quote,
/// triple-quoted too, numbers, <c>True</c>/<c>False</c>/<c>None</c>, lists and dicts) and writes it as the JSON that
/// Python's <c>json.dumps(..., ensure_ascii=False)</c> gives for the value, as vLLM's pythonic parser does. Like
/// <see cref="JsonValueScanner"/> the output only grows: a string streams a character at a time, a number or a name is
/// written once it has ended, and a comma waits for the next item (Python allows one before the closing bracket).
/// </summary>
internal sealed class PythonValueScanner(StringBuilder? output) : IValueScanner
{
    private enum State
    {
        Value,
        ListValueOrEnd,
        DictKeyOrEnd,
        Colon,
        AfterValue,
        StringOpen,
        StringOpenSecond,
        String,
        StringEscape,
        StringHex,
        Token,
        Done,
    }

    private readonly Stack<bool> _containers = new(); // true: dict, false: list
    private readonly StringBuilder _token = new();
    private State _state = State.Value;
    private bool _pendingComma;
    private bool _isKey;
    private char _quote;
    private bool _triple;
    private int _closingQuotes;
    private int _hexDigits;
    private int _hexValue;

    public ScanStatus Feed(char c)
    {
        switch (_state)
        {
            case State.Done:
                return ScanStatus.Error;

            case State.Value:
                return char.IsWhiteSpace(c) ? ScanStatus.NeedMore : BeginValue(c);

            case State.ListValueOrEnd:
                if (char.IsWhiteSpace(c))
                    return ScanStatus.NeedMore;
                if (c == ']')
                    return Close(']');
                return BeginValue(c);

            case State.DictKeyOrEnd:
                if (char.IsWhiteSpace(c))
                    return ScanStatus.NeedMore;
                if (c == '}')
                    return Close('}');
                _isKey = true;
                return BeginValue(c);

            case State.Colon:
                if (char.IsWhiteSpace(c))
                    return ScanStatus.NeedMore;
                if (c != ':')
                    return ScanStatus.Error;
                output?.Append(": ");
                _state = State.Value;
                return ScanStatus.NeedMore;

            case State.AfterValue:
                if (char.IsWhiteSpace(c))
                    return ScanStatus.NeedMore;
                bool inDict = _containers.Peek();
                if (c == ',')
                {
                    _pendingComma = true;
                    _state = inDict ? State.DictKeyOrEnd : State.ListValueOrEnd;
                    return ScanStatus.NeedMore;
                }
                return c == (inDict ? '}' : ']') ? Close(c) : ScanStatus.Error;

            case State.StringOpen:
                // After one quote: a second one is an empty string or the start of a triple-quoted one.
                if (c == _quote)
                {
                    _state = State.StringOpenSecond;
                    return ScanStatus.NeedMore;
                }
                _state = State.String;
                return Feed(c);

            case State.StringOpenSecond:
                if (c == _quote)
                {
                    _triple = true;
                    _state = State.String;
                    return ScanStatus.NeedMore;
                }
                // '' was an empty string, and this character follows it.
                var closed = EndString();
                return closed == ScanStatus.Complete ? ScanStatus.CompleteBefore : Feed(c);

            case State.String:
                return FeedString(c);

            case State.StringEscape:
                return FeedEscape(c);

            case State.StringHex:
                int digit = c switch
                {
                    >= '0' and <= '9' => c - '0',
                    >= 'a' and <= 'f' => c - 'a' + 10,
                    >= 'A' and <= 'F' => c - 'A' + 10,
                    _ => -1,
                };
                if (digit < 0)
                    return ScanStatus.Error;
                _hexValue = (_hexValue * 16) + digit;
                if (--_hexDigits > 0)
                    return ScanStatus.NeedMore;
                if (_hexValue > 0x10FFFF || (_hexValue is >= 0xD800 and <= 0xDFFF))
                    return ScanStatus.Error;
                JsonText.AppendEscaped(output, char.ConvertFromUtf32(_hexValue));
                _state = State.String;
                return ScanStatus.NeedMore;

            case State.Token:
                if (char.IsAsciiLetterOrDigit(c) || c is '_' or '.'
                    || (c is '+' or '-' && _token.Length > 0 && _token[^1] is 'e' or 'E' && !IsHexToken()))
                {
                    _token.Append(c);
                    return ScanStatus.NeedMore;
                }
                var ended = EndToken();
                if (ended == ScanStatus.Error)
                    return ScanStatus.Error;
                return ended == ScanStatus.Complete ? ScanStatus.CompleteBefore : Feed(c);

            default:
                return ScanStatus.Error;
        }
    }

    /// <summary>The end of the text: a top-level number or name needs no delimiter after it.</summary>
    public bool Finish()
    {
        if (_containers.Count == 0)
        {
            if (_state == State.Token)
                EndToken();
            else if (_state == State.StringOpenSecond)
                EndString();
        }
        return _state == State.Done;
    }

    private ScanStatus BeginValue(char c)
    {
        bool key = _isKey;
        if (_pendingComma)
        {
            output?.Append(", ");
            _pendingComma = false;
        }
        switch (c)
        {
            case '\'' or '"':
                _quote = c;
                _triple = false;
                _closingQuotes = 0;
                output?.Append('"');
                _state = State.StringOpen;
                return ScanStatus.NeedMore;
            case '[' or '{' when !key:
                if (_containers.Count == ValueScanners.MaxDepth)
                    return ScanStatus.Error;
                _containers.Push(c == '{');
                output?.Append(c);
                _state = c == '{' ? State.DictKeyOrEnd : State.ListValueOrEnd;
                return ScanStatus.NeedMore;
            case '-' or '+' or '.' or (>= '0' and <= '9'):
            case '_' or (>= 'a' and <= 'z') or (>= 'A' and <= 'Z'):
                _token.Clear();
                _token.Append(c);
                _state = State.Token;
                return ScanStatus.NeedMore;
            default:
                return ScanStatus.Error;
        }
    }

    private ScanStatus FeedString(char c)
    {
        if (c == _quote)
        {
            if (!_triple)
                return EndString();
            if (++_closingQuotes == 3)
                return EndString();
            return ScanStatus.NeedMore;
        }
        // Quotes that did not make three are part of a triple-quoted string.
        for (; _closingQuotes > 0; _closingQuotes--)
            JsonText.AppendEscaped(output, _quote);
        if (c == '\\')
        {
            _state = State.StringEscape;
            return ScanStatus.NeedMore;
        }
        if (!_triple && c == '\n')
            return ScanStatus.Error;
        JsonText.AppendEscaped(output, c);
        return ScanStatus.NeedMore;
    }

    private ScanStatus FeedEscape(char c)
    {
        _state = State.String;
        char? escaped = c switch
        {
            'n' => '\n',
            't' => '\t',
            'r' => '\r',
            'b' => '\b',
            'f' => '\f',
            'v' => '\v',
            'a' => '\a',
            '0' => '\0',
            '\\' or '\'' or '"' => c,
            _ => null,
        };
        if (escaped is { } e)
        {
            JsonText.AppendEscaped(output, e);
            return ScanStatus.NeedMore;
        }
        switch (c)
        {
            case '\n':
                return ScanStatus.NeedMore; // a line continuation
            case 'x' or 'u' or 'U':
                _hexDigits = c == 'x' ? 2 : c == 'u' ? 4 : 8;
                _hexValue = 0;
                _state = State.StringHex;
                return ScanStatus.NeedMore;
            default:
                // Python keeps an unknown escape as it is, backslash and all.
                JsonText.AppendEscaped(output, '\\');
                JsonText.AppendEscaped(output, c);
                return ScanStatus.NeedMore;
        }
    }

    private ScanStatus EndString()
    {
        output?.Append('"');
        return EndValue();
    }

    private bool IsHexToken() => _token.Length > 1 && _token[0] == '0' && _token[1] is 'x' or 'X';

    private ScanStatus EndToken()
    {
        var token = _token.ToString();
        string? json = token switch
        {
            "True" => "true",
            "False" => "false",
            "None" => "null",
            _ => char.IsAsciiLetter(token[0]) || token[0] == '_' ? null : NumberToJson(token),
        };
        if (json is null)
            return ScanStatus.Error;
        // A dict key becomes a JSON string, as json.dumps writes 1 or True as a key: "1", "true".
        output?.Append(_isKey && json[0] != '"' ? JsonText.Quote(json) : json);
        return EndValue();
    }

    private ScanStatus EndValue()
    {
        if (_isKey)
        {
            _isKey = false;
            _state = State.Colon;
            return ScanStatus.NeedMore;
        }
        if (_containers.Count == 0)
        {
            _state = State.Done;
            return ScanStatus.Complete;
        }
        _state = State.AfterValue;
        return ScanStatus.NeedMore;
    }

    private ScanStatus Close(char c)
    {
        _pendingComma = false;
        output?.Append(c);
        _containers.Pop();
        return EndValue();
    }

    /// <summary>A Python number literal as JSON: decimal integers and floats, hex/octal/binary and '_' separators converted.</summary>
    internal static string? NumberToJson(string token)
    {
        bool negative = token[0] == '-';
        var body = token[0] is '-' or '+' ? token[1..] : token;
        if (body.Length == 0 || body.StartsWith('-') || body.StartsWith('+') || body.EndsWith('_') || body.Contains("__", StringComparison.Ordinal))
            return null;
        body = body.Replace("_", "", StringComparison.Ordinal);
        string sign = negative ? "-" : "";
        if (body.Length > 2 && body[0] == '0' && body[1] is 'x' or 'X' or 'o' or 'O' or 'b' or 'B')
        {
            int radix = body[1] is 'x' or 'X' ? 16 : body[1] is 'o' or 'O' ? 8 : 2;
            BigInteger value = BigInteger.Zero;
            foreach (var c in body.AsSpan(2))
            {
                int digit = char.IsAsciiDigit(c) ? c - '0' : char.IsAsciiLetter(c) ? char.ToLowerInvariant(c) - 'a' + 10 : 99;
                if (digit >= radix)
                    return null;
                value = (value * radix) + digit;
            }
            return sign + value.ToString(CultureInfo.InvariantCulture);
        }
        if (body.All(char.IsAsciiDigit))
        {
            // Python refuses leading zeros in a decimal integer (except 0 itself).
            if (body.Length > 1 && body[0] == '0' && body.Any(c => c != '0'))
                return null;
            return sign + body.TrimStart('0').PadLeft(1, '0');
        }
        if (!double.TryParse(body, NumberStyles.AllowDecimalPoint | NumberStyles.AllowExponent, CultureInfo.InvariantCulture, out var number)
            || !double.IsFinite(number) || body.Any(c => !(char.IsAsciiDigit(c) || c is '.' or 'e' or 'E' or '+' or '-')))
            return null;
        // A float prints as Python's repr would: always with a point or an exponent.
        var text = number.ToString("R", CultureInfo.InvariantCulture);
        if (!text.Contains('.', StringComparison.Ordinal) && !text.Contains('E', StringComparison.Ordinal))
            text += ".0";
        return sign + text;
    }

    /// <summary>A whole Python literal as JSON text, or null when the text is not one.</summary>
    public static string? ToJson(ReadOnlySpan<char> text)
    {
        var sb = new StringBuilder(text.Length);
        return ValueScanners.ReadWhole(new PythonValueScanner(sb), sb, text);
    }
}
