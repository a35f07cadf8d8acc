using System.Globalization;
using System.Text;
using System.Text.Json;
using System.Text.RegularExpressions;

namespace Celer.Tokenization;

/// <summary>
/// A split/replace pattern from tokenizer.json (<c>{"String": s}</c> or <c>{"Regex": r}</c>),
/// matched the way HF tokenizers matches it with Oniguruma: over code points.
/// </summary>
/// <remarks>
/// .NET <see cref="Regex"/> works on UTF-16 code units, so a letter or digit outside the BMP
/// (𝐀, 𠀀, 𝟏) is two surrogates of category Cs and <c>\p{L}</c> / <c>\p{N}</c> miss it, which
/// would split Llama-3/Qwen words differently from the reference. Text with surrogate pairs is
/// therefore matched on a stand-in string where each astral code point becomes one BMP
/// character of the same general category, and match positions are mapped back. This is exact
/// for patterns built from category classes and BMP literals, which is what the GPT-2, Llama-3
/// and Qwen patterns are.
/// </remarks>
internal sealed class UnicodeRegex
{
    private readonly Regex _regex;

    private UnicodeRegex(Regex regex) => _regex = regex;

    public static UnicodeRegex FromRegex(string pattern, string path)
    {
        try
        {
            // No timeout: tokenizer patterns are trusted model files, and their alternations
            // are linear in practice; a timeout would make encoding nondeterministic.
            return new UnicodeRegex(new Regex(pattern, RegexOptions.CultureInvariant | RegexOptions.Compiled));
        }
        catch (ArgumentException e)
        {
            throw new TokenizerLoadException($"'{path}' regex is not supported by .NET Regex: {pattern} ({e.Message})", e);
        }
    }

    public static UnicodeRegex FromLiteral(string literal) =>
        new(new Regex(Regex.Escape(literal), RegexOptions.CultureInvariant));

    /// <summary>Parses HF's <c>{"String": …}</c> / <c>{"Regex": …}</c> pattern object.</summary>
    public static UnicodeRegex Parse(JsonElement pattern, string path)
    {
        TokenizerJson.Object(pattern, path);
        if (TokenizerJson.OptionalString(pattern, "String", path) is { } literal)
            return FromLiteral(literal);
        if (TokenizerJson.OptionalString(pattern, "Regex", path) is { } regex)
            return FromRegex(regex, $"{path}.Regex");
        throw new TokenizerLoadException($"'{path}' must have a \"String\" or \"Regex\" member.");
    }

    /// <summary>Non-overlapping matches as (start, end) UTF-16 offsets into <paramref name="text"/>.</summary>
    public List<(int Start, int End)> Matches(string text)
    {
        var result = new List<(int, int)>();
        if (!HasSurrogatePair(text))
        {
            foreach (var m in _regex.EnumerateMatches(text))
                result.Add((m.Index, m.Index + m.Length));
            return result;
        }

        var (standIn, originalIndex) = BuildStandIn(text);
        foreach (var m in _regex.EnumerateMatches(standIn))
            result.Add((originalIndex[m.Index], originalIndex[m.Index + m.Length]));
        return result;
    }

    public string Replace(string text, string replacement)
    {
        var matches = Matches(text);
        if (matches.Count == 0) return text;
        var sb = new StringBuilder(text.Length);
        int last = 0;
        foreach (var (start, end) in matches)
        {
            sb.Append(text, last, start - last).Append(replacement);
            last = end;
        }
        return sb.Append(text, last, text.Length - last).ToString();
    }

    private static bool HasSurrogatePair(string text)
    {
        for (int i = 0; i + 1 < text.Length; i++)
            if (char.IsHighSurrogate(text[i]) && char.IsLowSurrogate(text[i + 1])) return true;
        return false;
    }

    private static (string StandIn, int[] OriginalIndex) BuildStandIn(string text)
    {
        var sb = new StringBuilder(text.Length);
        var map = new List<int>(text.Length + 1);
        for (int i = 0; i < text.Length; i++)
        {
            map.Add(i);
            if (char.IsHighSurrogate(text[i]) && i + 1 < text.Length && char.IsLowSurrogate(text[i + 1]))
            {
                sb.Append(StandInFor(CharUnicodeInfo.GetUnicodeCategory(char.ConvertToUtf32(text[i], text[i + 1]))));
                i++;
            }
            else
            {
                sb.Append(text[i]);
            }
        }
        map.Add(text.Length);
        return (sb.ToString(), map.ToArray());
    }

    // One BMP, non-ASCII character per general category, none of them a literal in the
    // tokenizer patterns. Astral code points have no space separators or controls.
    private static char StandInFor(UnicodeCategory category) => category switch
    {
        UnicodeCategory.UppercaseLetter => '\u00C0',
        UnicodeCategory.LowercaseLetter => '\u00E0',
        UnicodeCategory.TitlecaseLetter => '\u01C5',
        UnicodeCategory.ModifierLetter => '\u02B0',
        UnicodeCategory.OtherLetter => '\u05D0',
        UnicodeCategory.NonSpacingMark => '\u0300',
        UnicodeCategory.SpacingCombiningMark => '\u0903',
        UnicodeCategory.EnclosingMark => '\u20DD',
        UnicodeCategory.DecimalDigitNumber => '\u0660',
        UnicodeCategory.LetterNumber => '\u2160',
        UnicodeCategory.OtherNumber => '\u00B2',
        UnicodeCategory.ConnectorPunctuation => '\u203F',
        UnicodeCategory.DashPunctuation => '\u2010',
        UnicodeCategory.OpenPunctuation => '\u2045',
        UnicodeCategory.ClosePunctuation => '\u2046',
        UnicodeCategory.InitialQuotePunctuation => '\u00AB',
        UnicodeCategory.FinalQuotePunctuation => '\u00BB',
        UnicodeCategory.OtherPunctuation => '\u00A1',
        UnicodeCategory.MathSymbol => '\u00AC',
        UnicodeCategory.CurrencySymbol => '\u00A2',
        UnicodeCategory.ModifierSymbol => '\u00B4',
        UnicodeCategory.OtherSymbol => '\u00A6',
        UnicodeCategory.Format => '\u00AD',
        UnicodeCategory.PrivateUse => '\uE000',
        _ => '\u0378', // unassigned
    };
}
