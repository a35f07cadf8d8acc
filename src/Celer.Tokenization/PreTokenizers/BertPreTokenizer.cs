namespace Celer.Tokenization.PreTokenizers;

/// <summary>
/// BERT's basic tokenizer after normalization (HF pre_tokenizers/bert.rs): split on whitespace, dropping it, then
/// make every punctuation character a word of its own ("you?!" → "you", "?", "!").
/// </summary>
internal sealed class BertPreTokenizer : PreTokenizer
{
    public override void PreTokenize(PreToken piece, List<PreToken> output)
    {
        var words = new List<PreToken>();
        TextSplitter.SplitOnChars(piece, BertCharacters.IsWhitespace, SplitDelimiterBehavior.Removed, words);
        foreach (var word in words)
            TextSplitter.SplitOnChars(word, BertCharacters.IsPunctuation, SplitDelimiterBehavior.Isolated, output);
    }
}
