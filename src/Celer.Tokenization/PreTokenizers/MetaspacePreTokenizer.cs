using System.Text.Json;

namespace Celer.Tokenization.PreTokenizers;

/// <summary>When Metaspace adds the SentencePiece dummy prefix.</summary>
internal enum PrependScheme
{
    Always,
    Never,
    First,
}

/// <summary>
/// SentencePiece's whitespace handling: spaces become the replacement ("▁"), a "▁" is prepended
/// per <see cref="PrependScheme"/>, and the text is split before each "▁".
/// </summary>
internal sealed class MetaspacePreTokenizer(char replacement, PrependScheme scheme, bool split) : PreTokenizer
{
    public static MetaspacePreTokenizer Parse(JsonElement json, string path)
    {
        var (replacement, scheme) = ParseCommon(json, path);
        return new MetaspacePreTokenizer(replacement, scheme, TokenizerJson.Bool(json, "split", path, true));
    }

    /// <summary>
    /// Reads replacement and prepend scheme for both the pre-tokenizer and the decoder. <c>prepend_scheme</c> wins; a
    /// file from before it has only the legacy <c>add_prefix_space</c>, read as older HF versions wrote it (true:
    /// "always", false: "never"; HF 0.22 refuses a lone false, which would turn such checkpoints away). Both stated and
    /// contradicting (false with a scheme other than "never") is an error, as in HF. <c>str_rep</c> is ignored.
    /// </summary>
    internal static (char Replacement, PrependScheme Scheme) ParseCommon(JsonElement json, string path)
    {
        var r = TokenizerJson.OptionalString(json, "replacement", path) ?? "\u2581";
        if (r.Length != 1) throw new TokenizerLoadException($"'{path}.replacement' must be a single character, found '{r}'.");
        bool addPrefixSpace = TokenizerJson.Bool(json, "add_prefix_space", path, true);
        var scheme = addPrefixSpace ? PrependScheme.Always : PrependScheme.Never;
        if (TokenizerJson.OptionalString(json, "prepend_scheme", path) is { } s)
        {
            scheme = s switch
            {
                "always" => PrependScheme.Always,
                "never" => PrependScheme.Never,
                "first" => PrependScheme.First,
                _ => throw new TokenizerLoadException($"'{path}.prepend_scheme' has unknown value '{s}'."),
            };
        }
        if (!addPrefixSpace && scheme != PrependScheme.Never)
        {
            throw new TokenizerLoadException(
                $"'{path}.add_prefix_space' is false but prepend_scheme is '{scheme.ToString().ToLowerInvariant()}': the two contradict.");
        }
        return (r[0], scheme);
    }

    public override void PreTokenize(PreToken piece, List<PreToken> output)
    {
        var text = piece.Text.Replace(' ', replacement);
        bool prepend = scheme == PrependScheme.Always || (scheme == PrependScheme.First && piece.AtStart);
        if (prepend && !text.StartsWith(replacement)) text = replacement + text;
        var replaced = piece with { Text = text };
        if (!split)
        {
            if (text.Length > 0) output.Add(replaced);
            return;
        }
        var matches = new List<(int, int)>();
        for (int i = 0; i < text.Length; i++)
            if (text[i] == replacement) matches.Add((i, i + 1));
        TextSplitter.Split(replaced, matches, SplitDelimiterBehavior.MergedWithNext, invert: false, output);
    }
}
