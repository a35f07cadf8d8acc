using System.Text.Json;

namespace Celer.Tokenization.Decoders;

/// <summary>
/// HF's WordPiece decoder (decoders/wordpiece.rs): every token but the first gets a leading space unless it starts
/// with the continuation prefix ("##"), which is removed instead. <c>cleanup</c> then undoes BERT's spacing around
/// punctuation and contractions, token by token as HF does, so it only sees a space the token itself carries
/// ("it ' s" stays as it is; " ." and " ," lose their space).
/// </summary>
internal sealed class WordPieceDecoder(string prefix, bool cleanup) : Decoder
{
    public static WordPieceDecoder Parse(JsonElement json, string path) =>
        new(TokenizerJson.OptionalString(json, "prefix", path) ?? "##", TokenizerJson.Bool(json, "cleanup", path, true));

    public override List<string> DecodeChain(List<string> tokens)
    {
        var output = new List<string>(tokens.Count);
        for (int i = 0; i < tokens.Count; i++)
        {
            var token = tokens[i];
            if (i != 0) token = token.StartsWith(prefix, StringComparison.Ordinal) ? token[prefix.Length..] : " " + token;
            output.Add(cleanup ? Cleanup(token) : token);
        }
        return output;
    }

    /// <summary>HF's <c>cleanup</c>: the same replacements, in the same order.</summary>
    internal static string Cleanup(string text) => text
        .Replace(" .", ".", StringComparison.Ordinal)
        .Replace(" ?", "?", StringComparison.Ordinal)
        .Replace(" !", "!", StringComparison.Ordinal)
        .Replace(" ,", ",", StringComparison.Ordinal)
        .Replace(" ' ", "'", StringComparison.Ordinal)
        .Replace(" n't", "n't", StringComparison.Ordinal)
        .Replace(" 'm", "'m", StringComparison.Ordinal)
        .Replace(" do not", " don't", StringComparison.Ordinal)
        .Replace(" 's", "'s", StringComparison.Ordinal)
        .Replace(" 've", "'ve", StringComparison.Ordinal)
        .Replace(" 're", "'re", StringComparison.Ordinal);
}
