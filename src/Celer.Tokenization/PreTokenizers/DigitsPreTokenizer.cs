using System.Globalization;

namespace Celer.Tokenization.PreTokenizers;

/// <summary>
/// HF <c>Digits</c>: splits numbers from the rest, a run at a time, or one digit at a time with
/// <c>individual_digits</c>. "Digit" is Rust's <c>char::is_numeric</c>: Nd, Nl or No, so ² and Ⅻ count.
/// </summary>
internal sealed class DigitsPreTokenizer(bool individualDigits) : PreTokenizer
{
    public override void PreTokenize(PreToken piece, List<PreToken> output) =>
        TextSplitter.SplitOnChars(piece, IsNumeric, individualDigits ? SplitDelimiterBehavior.Isolated : SplitDelimiterBehavior.Contiguous, output);

    private static bool IsNumeric(int c) => CharUnicodeInfo.GetUnicodeCategory(c)
        is UnicodeCategory.DecimalDigitNumber or UnicodeCategory.LetterNumber or UnicodeCategory.OtherNumber;
}
