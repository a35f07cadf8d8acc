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

    private readonly string src;
    private readonly List<Token> tokens = [];
    private int pos;
    private int line = 1;

    // Whether the text consumed so far ends a line: lstrip_blocks also applies to a tag with no newline
    // before it in its data when the previous tag's own match ended with one.
    private bool lineStarting = true;

    private Lexer(string source)
    {
        src = source.Replace("\r\n", "\n").Replace('\r', '\n');
        if (src.EndsWith('\n')) src = src[..^1];
    }

    public static List<Token> Tokenize(string source)
    {
        var lexer = new Lexer(source);
        lexer.Run();
        return lexer.tokens;
    }

    private void Run()
    {
        while (pos < src.Length)
        {
            var start = FindTagStart(pos);
            if (start < 0)
            {
                EmitData(src[pos..]);
                break;
            }
            var kind = src[start + 1];
            var signPos = start + 2;
            var sign = signPos < src.Length && src[signPos] is '-' or '+' ? src[signPos] : '\0';
            var text = src[pos..start];

            if (sign == '-')
            {
                text = text.TrimEnd();
            }
            else if (sign != '+' && kind != '{')
            {
                var lineStart = text.LastIndexOf('\n') + 1;
                if ((lineStart > 0 || lineStarting) && lineStart < text.Length && IsBlank(text, lineStart))
                    text = text[..lineStart];
            }

            var afterOpen = signPos + (sign == '\0' ? 0 : 1);
            if (kind == '%' && TryRaw(text, afterOpen)) continue;

            EmitData(text);
            line += CountNewlines(src, pos, afterOpen);
            pos = afterOpen;
            switch (kind)
            {
                case '#': LexComment(); break;
                case '%': LexTag(TokenKind.BlockBegin, TokenKind.BlockEnd, "%}"); break;
                default: LexTag(TokenKind.VariableBegin, TokenKind.VariableEnd, "}}"); break;
            }
        }
        tokens.Add(new Token(TokenKind.Eof, null, line));
    }

    private int FindTagStart(int from)
    {
        for (var i = from; i < src.Length - 1; i++)
        {
            if (src[i] == '{' && src[i + 1] is '{' or '%' or '#') return i;
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
        if (text.Length > 0) tokens.Add(new Token(TokenKind.Data, text, line));
    }

    /// <summary>Consumes the end of a tag: "-" strips following whitespace, plain block/comment ends eat one newline.</summary>
    private void ConsumeTagEnd(char sign, int endLength, bool isBlockOrComment)
    {
        var end = pos + endLength;
        if (sign == '-')
        {
            while (end < src.Length && char.IsWhiteSpace(src[end])) end++;
        }
        else if (sign == '\0' && isBlockOrComment && end < src.Length && src[end] == '\n')
        {
            end++;
        }
        line += CountNewlines(src, pos, end);
        lineStarting = src[end - 1] == '\n';
        pos = end;
    }

    private void LexComment()
    {
        var close = src.IndexOf("#}", pos, StringComparison.Ordinal);
        if (close < 0) throw new TemplateSyntaxException("Missing end of comment tag", line);
        var sign = close > pos && src[close - 1] is '-' or '+' ? src[close - 1] : '\0';
        var tagEnd = sign == '\0' ? close : close - 1;
        line += CountNewlines(src, pos, tagEnd);
        pos = tagEnd;
        ConsumeTagEnd(sign, close + 2 - tagEnd, isBlockOrComment: true);
    }

    /// <summary><c>{% raw %}...{% endraw %}</c>: the body is data, not lexed.</summary>
    private bool TryRaw(string textBefore, int afterOpen)
    {
        var i = SkipSpaces(afterOpen);
        if (string.CompareOrdinal(src, i, "raw", 0, 3) != 0) return false;
        i = SkipSpaces(i + 3);
        var minus = i < src.Length && src[i] == '-';
        if (string.CompareOrdinal(src, minus ? i + 1 : i, "%}", 0, 2) != 0) return false;
        EmitData(textBefore);
        line += CountNewlines(src, pos, i);
        pos = i;
        ConsumeTagEnd(minus ? '-' : '+', minus ? 3 : 2, isBlockOrComment: true);
        for (var search = pos; ; search++)
        {
            var open = src.IndexOf("{%", search, StringComparison.Ordinal);
            if (open < 0) throw new TemplateSyntaxException("Missing end of raw directive", line);
            var sign = open + 2 < src.Length && src[open + 2] is '-' or '+' ? src[open + 2] : '\0';
            var j = SkipSpaces(open + 2 + (sign == '\0' ? 0 : 1));
            if (string.CompareOrdinal(src, j, "endraw", 0, 6) != 0) continue;
            j = SkipSpaces(j + 6);
            var endSign = j < src.Length && src[j] is '-' or '+' ? src[j] : '\0';
            if (string.CompareOrdinal(src, endSign == '\0' ? j : j + 1, "%}", 0, 2) != 0) continue;
            var body = src[pos..open];
            if (sign == '-') body = body.TrimEnd();
            EmitData(body);
            line += CountNewlines(src, pos, j);
            pos = j;
            ConsumeTagEnd(endSign, endSign == '\0' ? 2 : 3, isBlockOrComment: true);
            return true;
        }
    }

    private int SkipSpaces(int i)
    {
        while (i < src.Length && char.IsWhiteSpace(src[i])) i++;
        return i;
    }

    private void LexTag(TokenKind begin, TokenKind endKind, string end)
    {
        tokens.Add(new Token(begin, null, line));
        var depth = 0; // open brackets: "}}" inside a dict literal does not close the tag
        while (true)
        {
            if (pos >= src.Length) throw new TemplateSyntaxException($"unexpected end of template, expected '{end}'", line);
            var c = src[pos];
            if (char.IsWhiteSpace(c))
            {
                if (c == '\n') line++;
                pos++;
                continue;
            }
            if (depth == 0)
            {
                var sign = c is '-' or '+' ? c : '\0';
                var at = sign == '\0' ? pos : pos + 1;
                // "+}}" is not an end in Jinja (only "-}}" and "}}" close a print tag).
                if (string.CompareOrdinal(src, at, end, 0, 2) == 0 && !(sign == '+' && endKind == TokenKind.VariableEnd))
                {
                    tokens.Add(new Token(endKind, null, line));
                    ConsumeTagEnd(sign, at + 2 - pos, isBlockOrComment: endKind == TokenKind.BlockEnd);
                    return;
                }
            }
            if (c is '\'' or '"') LexString(c);
            else if (char.IsAsciiDigit(c)) LexNumber();
            else if (char.IsLetter(c) || c == '_') LexName();
            else
            {
                var op = Operators.FirstOrDefault(o => string.CompareOrdinal(src, pos, o, 0, o.Length) == 0)
                    ?? throw new TemplateSyntaxException($"unexpected char {PyRepr(c)} at {pos}", line);
                if (op is "(" or "[" or "{") depth++;
                else if (op is ")" or "]" or "}") depth = Math.Max(0, depth - 1);
                tokens.Add(new Token(TokenKind.Operator, op, line));
                pos += op.Length;
            }
        }
    }

    private static string PyRepr(char c) => c == '\'' ? "\"'\"" : $"'{c}'";

    private void LexName()
    {
        var start = pos;
        while (pos < src.Length && (char.IsLetterOrDigit(src[pos]) || src[pos] == '_')) pos++;
        tokens.Add(new Token(TokenKind.Name, src[start..pos], line));
    }

    private void LexNumber()
    {
        var start = pos;
        if (src[pos] == '0' && pos + 1 < src.Length && src[pos + 1] is 'x' or 'X' or 'o' or 'O' or 'b' or 'B')
        {
            var radix = char.ToLowerInvariant(src[pos + 1]) switch { 'x' => 16, 'o' => 8, _ => 2 };
            pos += 2;
            var digitsStart = pos;
            while (pos < src.Length && (Uri.IsHexDigit(src[pos]) || src[pos] == '_')) pos++;
            var digits = src[digitsStart..pos].Replace("_", "");
            tokens.Add(new Token(TokenKind.Integer, Convert.ToInt64(digits, radix), line));
            return;
        }
        SkipDigits();
        var isFloat = false;
        if (pos + 1 < src.Length && src[pos] == '.' && char.IsAsciiDigit(src[pos + 1]))
        {
            isFloat = true;
            pos++;
            SkipDigits();
        }
        if (pos < src.Length && src[pos] is 'e' or 'E')
        {
            var e = pos + 1;
            if (e < src.Length && src[e] is '+' or '-') e++;
            if (e < src.Length && char.IsAsciiDigit(src[e]))
            {
                isFloat = true;
                pos = e;
                SkipDigits();
            }
        }
        var text = src[start..pos].Replace("_", "");
        tokens.Add(isFloat
            ? new Token(TokenKind.Float, double.Parse(text, NumberStyles.Float, CultureInfo.InvariantCulture), line)
            : new Token(TokenKind.Integer, long.Parse(text, CultureInfo.InvariantCulture), line));
    }

    private void SkipDigits()
    {
        while (pos < src.Length && (char.IsAsciiDigit(src[pos]) || (src[pos] == '_' && pos + 1 < src.Length && char.IsAsciiDigit(src[pos + 1])))) pos++;
    }

    /// <summary>A quoted string, unescaped the way Python's "unicode-escape" codec does it (Jinja uses that codec).</summary>
    private void LexString(char quote)
    {
        var startLine = line;
        var sb = new StringBuilder();
        pos++;
        while (true)
        {
            if (pos >= src.Length) throw new TemplateSyntaxException("unexpected end of string", startLine);
            var c = src[pos++];
            if (c == quote) break;
            if (c == '\n') line++;
            if (c != '\\')
            {
                sb.Append(c);
                continue;
            }
            if (pos >= src.Length) throw new TemplateSyntaxException("unexpected end of string", startLine);
            var e = src[pos++];
            switch (e)
            {
                case '\n': line++; break; // line continuation
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
                    for (var k = 0; k < 2 && pos < src.Length && src[pos] is >= '0' and <= '7'; k++) octal = octal * 8 + (src[pos++] - '0');
                    sb.Append((char)octal);
                    break;
                default: sb.Append('\\').Append(e); break; // unknown escapes stay as written
            }
        }
        tokens.Add(new Token(TokenKind.String, sb.ToString(), startLine));
    }

    private string HexEscape(int digits)
    {
        if (pos + digits > src.Length || !src.AsSpan(pos, digits).ContainsOnlyHex())
            throw new TemplateSyntaxException($"truncated \\{(digits == 2 ? 'x' : digits == 4 ? 'u' : 'U')} escape in string", line);
        var code = int.Parse(src.AsSpan(pos, digits), NumberStyles.HexNumber, CultureInfo.InvariantCulture);
        pos += digits;
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
