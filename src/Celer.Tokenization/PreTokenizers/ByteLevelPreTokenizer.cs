namespace Celer.Tokenization.PreTokenizers;

/// <summary>
/// GPT-2's byte-level pre-tokenizer: optionally splits with the GPT-2 regex, then rewrites every
/// UTF-8 byte of each piece as its printable stand-in character (see <see cref="ByteLevel"/>).
/// </summary>
internal sealed class ByteLevelPreTokenizer(bool addPrefixSpace, bool useRegex) : PreTokenizer
{
    // GPT-2's pattern, as in HF tokenizers' byte_level.rs.
    private static readonly Lazy<UnicodeRegex> Gpt2Pattern = new(() => UnicodeRegex.FromRegex(
        @"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+", "ByteLevel"));

    public override void PreTokenize(PreToken piece, List<PreToken> output)
    {
        if (addPrefixSpace && !piece.Text.StartsWith(' '))
            piece = piece with { Text = " " + piece.Text };
        if (!useRegex)
        {
            if (piece.Text.Length > 0) output.Add(piece with { Text = ByteLevel.Encode(piece.Text) });
            return;
        }
        int first = output.Count;
        TextSplitter.Split(piece, Gpt2Pattern.Value.Matches(piece.Text), SplitDelimiterBehavior.Isolated, invert: false, output);
        for (int i = first; i < output.Count; i++)
            output[i] = output[i] with { Text = ByteLevel.Encode(output[i].Text) };
    }
}
