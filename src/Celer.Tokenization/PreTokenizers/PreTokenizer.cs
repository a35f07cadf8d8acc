using System.Text.Json;

namespace Celer.Tokenization.PreTokenizers;

/// <summary>
/// A piece of normalized text on its way to the model. <see cref="AtStart"/> is true when the
/// piece begins at offset 0 of the original input (HF's <c>offsets_original().0 == 0</c>), which
/// Metaspace's <c>prepend_scheme: "first"</c> depends on.
/// </summary>
internal readonly record struct PreToken(string Text, bool AtStart);

/// <summary>A tokenizer.json pre-tokenizer: splits each piece into the words the model runs on.</summary>
internal abstract class PreTokenizer
{
    public abstract void PreTokenize(PreToken piece, List<PreToken> output);

    public static PreTokenizer? Parse(JsonElement? json, string path)
    {
        if (json is not { } j) return null;
        var type = TokenizerJson.Type(j, path);
        return type switch
        {
            "Sequence" => new SequencePreTokenizer(TokenizerJson.Array(j, "pretokenizers", path).EnumerateArray()
                .Select((p, i) => Parse(p, $"{path}.pretokenizers[{i}]")!).ToArray()),
            "Split" => SplitPreTokenizer.Parse(j, path),
            "ByteLevel" => new ByteLevelPreTokenizer(
                TokenizerJson.Bool(j, "add_prefix_space", path, true), TokenizerJson.Bool(j, "use_regex", path, true)),
            "Metaspace" => MetaspacePreTokenizer.Parse(j, path),
            "BertPreTokenizer" => new BertPreTokenizer(),
            "Whitespace" => new WhitespacePreTokenizer(),
            "WhitespaceSplit" => new WhitespaceSplitPreTokenizer(),
            "Punctuation" => new PunctuationPreTokenizer(TextSplitter.ParseBehavior(j, path, SplitDelimiterBehavior.Isolated)),
            "Digits" => new DigitsPreTokenizer(TokenizerJson.Bool(j, "individual_digits", path, false)),
            _ => throw new TokenizerLoadException($"Pre-tokenizer type '{type}' at '{path}' is not supported."),
        };
    }
}

internal sealed class SequencePreTokenizer(PreTokenizer[] preTokenizers) : PreTokenizer
{
    public override void PreTokenize(PreToken piece, List<PreToken> output)
    {
        var current = new List<PreToken> { piece };
        var next = new List<PreToken>();
        foreach (var p in preTokenizers)
        {
            next.Clear();
            foreach (var t in current) p.PreTokenize(t, next);
            (current, next) = (next, current);
        }
        output.AddRange(current);
    }
}
