namespace Celer.Tokenization.PreTokenizers;

/// <summary>HF <c>Punctuation</c>: splits on BERT's punctuation characters, each one a delimiter of its own.</summary>
internal sealed class PunctuationPreTokenizer(SplitDelimiterBehavior behavior) : PreTokenizer
{
    public override void PreTokenize(PreToken piece, List<PreToken> output) =>
        TextSplitter.SplitOnChars(piece, BertCharacters.IsPunctuation, behavior, output);
}
