using System.Text.Json;

namespace Celer.Tokenization.PreTokenizers;

/// <summary>HF <c>Split</c>: the Llama-3 / Qwen regex pre-tokenizer, or a literal split (Gemma 3).</summary>
internal sealed class SplitPreTokenizer(UnicodeRegex pattern, SplitDelimiterBehavior behavior, bool invert) : PreTokenizer
{
    public static SplitPreTokenizer Parse(JsonElement json, string path)
    {
        var pattern = UnicodeRegex.Parse(TokenizerJson.Required(json, "pattern", path), $"{path}.pattern");
        return new SplitPreTokenizer(pattern, TextSplitter.ParseBehavior(json, path), TokenizerJson.Bool(json, "invert", path, false));
    }

    public override void PreTokenize(PreToken piece, List<PreToken> output) =>
        TextSplitter.Split(piece, pattern.Matches(piece.Text), behavior, invert, output);
}
