using System.Text;
using System.Text.Json;

namespace Celer.Tokenization.Normalizers;

/// <summary>
/// BERT's text cleanup, in HF's order (normalizers/bert.rs): drop control characters, U+0000 and U+FFFD and turn
/// every whitespace into ' '; put spaces around CJK ideographs so each becomes a word; strip accents (NFD, then drop
/// Mn); lowercase. <c>strip_accents</c> null follows <c>lowercase</c>, which is what uncased BERT vocabularies expect.
/// </summary>
internal sealed class BertNormalizer(bool cleanText, bool handleChineseChars, bool stripAccents, bool lowercase) : Normalizer
{
    public static BertNormalizer Parse(JsonElement json, string path)
    {
        // Missing fields take HF's BertNormalizer::default(), the bert-base-uncased settings.
        bool lowercase = TokenizerJson.Bool(json, "lowercase", path, true);
        bool? stripAccents = TokenizerJson.Optional(json, "strip_accents") is null ? null : TokenizerJson.Bool(json, "strip_accents", path, false);
        return new BertNormalizer(TokenizerJson.Bool(json, "clean_text", path, true), TokenizerJson.Bool(json, "handle_chinese_chars", path, true),
            stripAccents ?? lowercase, lowercase);
    }

    public override string Normalize(string text)
    {
        if (cleanText || handleChineseChars) text = CleanAndSpaceIdeographs(text);
        if (stripAccents) text = StripAccents(text);
        if (lowercase) text = LowercaseNormalizer.Lowercase(text);
        return text;
    }

    private string CleanAndSpaceIdeographs(string text)
    {
        StringBuilder? sb = null;
        for (int i = 0; i < text.Length;)
        {
            int start = i;
            int c = BertCharacters.CodePointAt(text, i, out int length);
            i += length;
            if (cleanText && (c is 0 or 0xFFFD || BertCharacters.IsControl(c)))
            {
                sb ??= new StringBuilder(text.Length + 8).Append(text, 0, start);
                continue;
            }
            if (cleanText && c != ' ' && BertCharacters.IsWhitespace(c))
            {
                (sb ??= new StringBuilder(text.Length + 8).Append(text, 0, start)).Append(' ');
                continue;
            }
            if (handleChineseChars && BertCharacters.IsChineseChar(c))
            {
                (sb ??= new StringBuilder(text.Length + 8).Append(text, 0, start)).Append(' ').Append(text, start, length).Append(' ');
                continue;
            }
            sb?.Append(text, start, length);
        }
        return sb?.ToString() ?? text;
    }

    private static string StripAccents(string text)
    {
        var decomposed = UnicodeNormalizer.Normalize(text, NormalizationForm.FormD);
        StringBuilder? sb = null;
        for (int i = 0; i < decomposed.Length;)
        {
            int start = i;
            int c = BertCharacters.CodePointAt(decomposed, i, out int length);
            i += length;
            if (BertCharacters.IsNonspacingMark(c)) sb ??= new StringBuilder(decomposed.Length).Append(decomposed, 0, start);
            else sb?.Append(decomposed, start, length);
        }
        return sb?.ToString() ?? decomposed;
    }
}
