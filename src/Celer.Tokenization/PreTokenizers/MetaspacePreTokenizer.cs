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

    /// <summary>Reads replacement and prepend scheme; files older than prepend_scheme use add_prefix_space.</summary>
    internal static (char Replacement, PrependScheme Scheme) ParseCommon(JsonElement json, string path)
    {
        var r = TokenizerJson.OptionalString(json, "replacement", path) ?? "\u2581";
        if (r.Length != 1) throw new TokenizerLoadException($"'{path}.replacement' must be a single character, found '{r}'.");
        PrependScheme scheme;
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
        else
        {
            scheme = TokenizerJson.Bool(json, "add_prefix_space", path, true) ? PrependScheme.Always : PrependScheme.Never;
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
