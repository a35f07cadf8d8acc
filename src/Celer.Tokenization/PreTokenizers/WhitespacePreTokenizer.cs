using System.Globalization;

namespace Celer.Tokenization.PreTokenizers;

/// <summary>
/// HF <c>Whitespace</c>: keeps the matches of <c>\w+|[^\w\s]+</c> (Rust regex, Unicode classes) and drops the rest,
/// so "Hey man!" is "Hey", "man", "!". The regex is a run of one class at a time, which is how it is matched here:
/// .NET's <c>\w</c> is a different set from Rust's.
/// </summary>
internal sealed class WhitespacePreTokenizer : PreTokenizer
{
    public override void PreTokenize(PreToken piece, List<PreToken> output)
    {
        string text = piece.Text;
        int runStart = 0, runClass = Space;
        for (int i = 0; i <= text.Length;)
        {
            int length = 0, c = 0;
            if (i < text.Length) c = BertCharacters.CodePointAt(text, i, out length);
            int cls = i == text.Length ? Space : IsWordChar(c) ? Word : BertCharacters.IsWhitespace(c) ? Space : Other;
            if (cls != runClass || i == text.Length)
            {
                if (runClass != Space && i > runStart) output.Add(new PreToken(text[runStart..i], piece.AtStart && runStart == 0));
                runStart = i;
                runClass = cls;
            }
            if (i == text.Length) break;
            i += length;
        }
    }

    private const int Space = 0, Word = 1, Other = 2;

    /// <summary>
    /// Rust regex's Unicode <c>\w</c>: Alphabetic, M, Nd, Pc and Join_Control. Alphabetic is L, Nl and
    /// Other_Alphabetic, which is marks but for the circled and squared Latin letters (So) listed here.
    /// </summary>
    private static bool IsWordChar(int c)
    {
        if (c < 0x80) return char.IsAsciiLetterOrDigit((char)c) || c == '_';
        if (c is 0x200C or 0x200D or >= 0x24B6 and <= 0x24E9 or >= 0x1F130 and <= 0x1F149 or >= 0x1F150 and <= 0x1F169
            or >= 0x1F170 and <= 0x1F189) return true;
        return CharUnicodeInfo.GetUnicodeCategory(c) switch
        {
            UnicodeCategory.UppercaseLetter or UnicodeCategory.LowercaseLetter or UnicodeCategory.TitlecaseLetter
                or UnicodeCategory.ModifierLetter or UnicodeCategory.OtherLetter or UnicodeCategory.NonSpacingMark
                or UnicodeCategory.SpacingCombiningMark or UnicodeCategory.EnclosingMark or UnicodeCategory.DecimalDigitNumber
                or UnicodeCategory.LetterNumber or UnicodeCategory.ConnectorPunctuation => true,
            _ => false,
        };
    }
}

/// <summary>HF <c>WhitespaceSplit</c>: splits on whitespace (Rust's <c>char::is_whitespace</c>) and drops it.</summary>
internal sealed class WhitespaceSplitPreTokenizer : PreTokenizer
{
    public override void PreTokenize(PreToken piece, List<PreToken> output) =>
        TextSplitter.SplitOnChars(piece, BertCharacters.IsWhitespace, SplitDelimiterBehavior.Removed, output);
}
