using System.Globalization;
using System.Text;

namespace Celer.ChatTemplates.Syntax;

/// <summary>
/// Jinja's lexer as transformers configures it: <c>trim_blocks=True</c> (drop the first newline after a block or
/// comment tag), <c>lstrip_blocks=True</c> (drop spaces and tabs before a block or comment tag that starts its
/// line), <c>-</c> strips all whitespace on that side of a tag, <c>+</c> opts a tag out of trim/lstrip, and a
/// single trailing newline of the source is dropped (<c>keep_trailing_newline=False</c>).
/// </summary>
internal sealed class Lexer
{
    private static readonly string[] Operators =
        ["**", "//", "==", "!=", ">=", "<=", "+", "-", "/", "*", "%", "~", "[", "]", "(", ")", "{", "}", ">", "<", "=", ".", ":", "|", ",", ";"];

    private readonly string _src;
    private readonly List<Token> _tokens = [];
    private int _pos;
    private int _line = 1;

    // Whether the text consumed so far ends a line: lstrip_blocks also applies to a tag with no newline
    // before it in its data when the previous tag's own match ended with one.
    private bool _lineStarting = true;

    private Lexer(string source)
    {
        _src = source.Replace("\r\n", "\n").Replace('\r', '\n');
        if (_src.EndsWith('\n')) _src = _src[..^1];
    }

    public static List<Token> Tokenize(string source)
    {
        var lexer = new Lexer(source);
        lexer.Run();
        return lexer._tokens;
    }

    private void Run()
    {
        while (_pos < _src.Length)
        {
            var start = FindTagStart(_pos);
            if (start < 0)
            {
                EmitData(_src[_pos..]);
                break;
            }
            var kind = _src[start + 1];
            var signPos = start + 2;
            var sign = signPos < _src.Length && _src[signPos] is '-' or '+' ? _src[signPos] : '\0';
            var text = _src[_pos..start];

            if (sign == '-')
            {
                text = text.TrimEnd();
            }
            else if (sign != '+' && kind != '{')
            {
                var lineStart = text.LastIndexOf('\n') + 1;
                if ((lineStart > 0 || _lineStarting) && lineStart < text.Length && IsBlank(text, lineStart))
                    text = text[..lineStart];
            }

            var afterOpen = signPos + (sign == '\0' ? 0 : 1);
            if (kind == '%' && TryRaw(text, afterOpen)) continue;

            EmitData(text);
            _line += CountNewlines(_src, _pos, afterOpen);
            _pos = afterOpen;
            switch (kind)
            {
                case '#': LexComment(); break;
                case '%': LexTag(TokenKind.BlockBegin, TokenKind.BlockEnd, "%}"); break;
                default: LexTag(TokenKind.VariableBegin, TokenKind.VariableEnd, "}}"); break;
            }
        }
        _tokens.Add(new Token(TokenKind.Eof, null, _line));
    }

    private int FindTagStart(int from)
    {
        for (var i = from; i < _src.Length - 1; i++)
        {
            if (_src[i] == '{' && _src[i + 1] is '{' or '%' or '#') return i;
        }
        return -1;
    }

    private static bool IsBlank(string text, int from)
    {
        for (var i = from; i < text.Length; i++)
        {
            if (!char.IsWhiteSpace(text[i])) return false;
        }
        return true;
    }

    private static int CountNewlines(string s, int from, int to)
    {
        var n = 0;
        for (var i = from; i < to; i++)
        {
            if (s[i] == '\n') n++;
        }
        return n;
    }

    private void EmitData(string text)
    {
        if (text.Length > 0) _tokens.Add(new Token(TokenKind.Data, text, _line));
    }

    /// <summary>Consumes the end of a tag: "-" strips following whitespace, plain block/comment ends eat one newline.</summary>
    private void ConsumeTagEnd(char sign, int endLength, bool isBlockOrComment)
    {
        var end = _pos + endLength;
        if (sign == '-')
        {
            while (end < _src.Length && char.IsWhiteSpace(_src[end])) end++;
        }
        else if (sign == '\0' && isBlockOrComment && end < _src.Length && _src[end] == '\n')
        {
            end++;
        }
        _line += CountNewlines(_src, _pos, end);
        _lineStarting = _src[end - 1] == '\n';
        _pos = end;
    }

    private void LexComment()
    {
        var close = _src.IndexOf("#}", _pos, StringComparison.Ordinal);
        if (close < 0) throw new TemplateSyntaxException("Missing end of comment tag", _line);
        var sign = close > _pos && _src[close - 1] is '-' or '+' ? _src[close - 1] : '\0';
        var tagEnd = sign == '\0' ? close : close - 1;
        _line += CountNewlines(_src, _pos, tagEnd);
        _pos = tagEnd;
        ConsumeTagEnd(sign, close + 2 - tagEnd, isBlockOrComment: true);
    }

    /// <summary><c>{% raw %}...{% endraw %}</c>: the body is data, not lexed.</summary>
    private bool TryRaw(string textBefore, int afterOpen)
    {
        var i = SkipSpaces(afterOpen);
        if (string.CompareOrdinal(_src, i, "raw", 0, 3) != 0) return false;
        i = SkipSpaces(i + 3);
        var minus = i < _src.Length && _src[i] == '-';
        if (string.CompareOrdinal(_src, minus ? i + 1 : i, "%}", 0, 2) != 0) return false;
        EmitData(textBefore);
        _line += CountNewlines(_src, _pos, i);
        _pos = i;
        ConsumeTagEnd(minus ? '-' : '+', minus ? 3 : 2, isBlockOrComment: true);
        for (var search = _pos; ; search++)
        {
            var open = _src.IndexOf("{%", search, StringComparison.Ordinal);
            if (open < 0) throw new TemplateSyntaxException("Missing end of raw directive", _line);
            var sign = open + 2 < _src.Length && _src[open + 2] is '-' or '+' ? _src[open + 2] : '\0';
            var j = SkipSpaces(open + 2 + (sign == '\0' ? 0 : 1));
            if (string.CompareOrdinal(_src, j, "endraw", 0, 6) != 0) continue;
            j = SkipSpaces(j + 6);
            var endSign = j < _src.Length && _src[j] is '-' or '+' ? _src[j] : '\0';
            if (string.CompareOrdinal(_src, endSign == '\0' ? j : j + 1, "%}", 0, 2) != 0) continue;
            var body = _src[_pos..open];
            if (sign == '-') body = body.TrimEnd();
            EmitData(body);
            _line += CountNewlines(_src, _pos, j);
            _pos = j;
            ConsumeTagEnd(endSign, endSign == '\0' ? 2 : 3, isBlockOrComment: true);
            return true;
        }
    }

    private int SkipSpaces(int i)
    {
        while (i < _src.Length && char.IsWhiteSpace(_src[i])) i++;
        return i;
    }

    private void LexTag(TokenKind begin, TokenKind endKind, string end)
    {
        _tokens.Add(new Token(begin, null, _line));
        var depth = 0; // open brackets: "}}" inside a dict literal does not close the tag
        while (true)
        {
            if (_pos >= _src.Length) throw new TemplateSyntaxException($"unexpected end of template, expected '{end}'", _line);
            var c = _src[_pos];
            if (char.IsWhiteSpace(c))
            {
                if (c == '\n') _line++;
                _pos++;
                continue;
            }
            if (depth == 0)
            {
                var sign = c is '-' or '+' ? c : '\0';
                var at = sign == '\0' ? _pos : _pos + 1;
                // "+}}" is not an end in Jinja (only "-}}" and "}}" close a print tag).
                if (string.CompareOrdinal(_src, at, end, 0, 2) == 0 && !(sign == '+' && endKind == TokenKind.VariableEnd))
                {
                    _tokens.Add(new Token(endKind, null, _line));
                    ConsumeTagEnd(sign, at + 2 - _pos, isBlockOrComment: endKind == TokenKind.BlockEnd);
                    return;
                }
            }
            if (c is '\'' or '"') LexString(c);
            else if (char.IsAsciiDigit(c)) LexNumber();
            else if (char.IsLetter(c) || c == '_') LexName();
            else
            {
                var op = Operators.FirstOrDefault(o => string.CompareOrdinal(_src, _pos, o, 0, o.Length) == 0)
                    ?? throw new TemplateSyntaxException($"unexpected char {PyRepr(c)} at {_pos}", _line);
                if (op is "(" or "[" or "{") depth++;
                else if (op is ")" or "]" or "}") depth = Math.Max(0, depth - 1);
                _tokens.Add(new Token(TokenKind.Operator, op, _line));
                _pos += op.Length;
            }
        }
    }

    private static string PyRepr(char c) => c == '\'' ? "\"'\"" : $"'{c}'";

    private void LexName()
    {
        var start = _pos;
        while (_pos < _src.Length && (char.IsLetterOrDigit(_src[_pos]) || _src[_pos] == '_')) _pos++;
        _tokens.Add(new Token(TokenKind.Name, _src[start.._pos], _line));
    }

    private void LexNumber()
    {
        var start = _pos;
        if (_src[_pos] == '0' && _pos + 1 < _src.Length && _src[_pos + 1] is 'x' or 'X' or 'o' or 'O' or 'b' or 'B')
        {
            var radix = char.ToLowerInvariant(_src[_pos + 1]) switch { 'x' => 16, 'o' => 8, _ => 2 };
            _pos += 2;
            var digitsStart = _pos;
            while (_pos < _src.Length && (Uri.IsHexDigit(_src[_pos]) || _src[_pos] == '_')) _pos++;
            var digits = _src[digitsStart.._pos].Replace("_", "");
            _tokens.Add(new Token(TokenKind.Integer, Convert.ToInt64(digits, radix), _line));
            return;
        }
        SkipDigits();
        var isFloat = false;
        if (_pos + 1 < _src.Length && _src[_pos] == '.' && char.IsAsciiDigit(_src[_pos + 1]))
        {
            isFloat = true;
            _pos++;
            SkipDigits();
        }
        if (_pos < _src.Length && _src[_pos] is 'e' or 'E')
        {
            var e = _pos + 1;
            if (e < _src.Length && _src[e] is '+' or '-') e++;
            if (e < _src.Length && char.IsAsciiDigit(_src[e]))
            {
                isFloat = true;
                _pos = e;
                SkipDigits();
            }
        }
        var text = _src[start.._pos].Replace("_", "");
        _tokens.Add(isFloat
            ? new Token(TokenKind.Float, double.Parse(text, NumberStyles.Float, CultureInfo.InvariantCulture), _line)
            : new Token(TokenKind.Integer, long.Parse(text, CultureInfo.InvariantCulture), _line));
    }

    private void SkipDigits()
    {
        while (_pos < _src.Length && (char.IsAsciiDigit(_src[_pos]) || (_src[_pos] == '_' && _pos + 1 < _src.Length && char.IsAsciiDigit(_src[_pos + 1])))) _pos++;
    }

    /// <summary>A quoted string, unescaped the way Python's "unicode-escape" codec does it (Jinja uses that codec).</summary>
    private void LexString(char quote)
    {
        var startLine = _line;
        var sb = new StringBuilder();
        _pos++;
        while (true)
        {
            if (_pos >= _src.Length) throw new TemplateSyntaxException("unexpected end of string", startLine);
            var c = _src[_pos++];
            if (c == quote) break;
            if (c == '\n') _line++;
            if (c != '\\')
            {
                sb.Append(c);
                continue;
            }
            if (_pos >= _src.Length) throw new TemplateSyntaxException("unexpected end of string", startLine);
            var e = _src[_pos++];
            switch (e)
            {
                case '\n': _line++; break; // line continuation
                case '\\': sb.Append('\\'); break;
                case '\'': sb.Append('\''); break;
                case '"': sb.Append('"'); break;
                case 'n': sb.Append('\n'); break;
                case 't': sb.Append('\t'); break;
                case 'r': sb.Append('\r'); break;
                case 'a': sb.Append('\a'); break;
                case 'b': sb.Append('\b'); break;
                case 'f': sb.Append('\f'); break;
                case 'v': sb.Append('\v'); break;
                case 'x': sb.Append(HexEscape(2)); break;
                case 'u': sb.Append(HexEscape(4)); break;
                case 'U': sb.Append(HexEscape(8)); break;
                case >= '0' and <= '7':
                    var octal = e - '0';
                    for (var k = 0; k < 2 && _pos < _src.Length && _src[_pos] is >= '0' and <= '7'; k++) octal = octal * 8 + (_src[_pos++] - '0');
                    sb.Append((char)octal);
                    break;
                default: sb.Append('\\').Append(e); break; // unknown escapes stay as written
            }
        }
        _tokens.Add(new Token(TokenKind.String, sb.ToString(), startLine));
    }

    private string HexEscape(int digits)
    {
        if (_pos + digits > _src.Length || !_src.AsSpan(_pos, digits).ContainsOnlyHex())
            throw new TemplateSyntaxException($"truncated \\{(digits == 2 ? 'x' : digits == 4 ? 'u' : 'U')} escape in string", _line);
        var code = int.Parse(_src.AsSpan(_pos, digits), NumberStyles.HexNumber, CultureInfo.InvariantCulture);
        _pos += digits;
        return char.ConvertFromUtf32(code);
    }
}

internal static class SpanHexExtensions
{
    public static bool ContainsOnlyHex(this ReadOnlySpan<char> span)
    {
        foreach (var c in span)
        {
            if (!Uri.IsHexDigit(c)) return false;
        }
        return true;
    }
}
