using System.Text;
using System.Text.Json;

namespace Celer.Tokenization.Normalizers;

/// <summary>
/// A tokenizer.json normalizer. HF applies it to each piece of text left between added tokens
/// (not to the whole input), which matters for <see cref="PrependNormalizer"/>.
/// </summary>
internal abstract class Normalizer
{
    public abstract string Normalize(string text);

    public static Normalizer? Parse(JsonElement? json, string path)
    {
        if (json is not { } j) return null;
        var type = TokenizerJson.Type(j, path);
        return type switch
        {
            "Sequence" => new SequenceNormalizer(TokenizerJson.Array(j, "normalizers", path).EnumerateArray()
                .Select((n, i) => Parse(n, $"{path}.normalizers[{i}]")!).ToArray()),
            "NFC" => new UnicodeFormNormalizer(NormalizationForm.FormC),
            "NFD" => new UnicodeFormNormalizer(NormalizationForm.FormD),
            "NFKC" => new UnicodeFormNormalizer(NormalizationForm.FormKC),
            "NFKD" => new UnicodeFormNormalizer(NormalizationForm.FormKD),
            "Prepend" => new PrependNormalizer(TokenizerJson.String(j, "prepend", path)),
            "Replace" => new ReplaceNormalizer(UnicodeRegex.Parse(TokenizerJson.Required(j, "pattern", path), $"{path}.pattern"),
                TokenizerJson.String(j, "content", path)),
            "Lowercase" => new LowercaseNormalizer(),
            "Strip" => new StripNormalizer(TokenizerJson.Bool(j, "strip_left", path, true), TokenizerJson.Bool(j, "strip_right", path, true)),
            _ => throw new TokenizerLoadException($"Normalizer type '{type}' at '{path}' is not supported."),
        };
    }
}

internal sealed class SequenceNormalizer(Normalizer[] normalizers) : Normalizer
{
    public override string Normalize(string text)
    {
        foreach (var n in normalizers) text = n.Normalize(text);
        return text;
    }
}

internal sealed class UnicodeFormNormalizer(NormalizationForm form) : Normalizer
{
    public override string Normalize(string text) => UnicodeNormalizer.Normalize(text, form);
}

/// <summary>SentencePiece's dummy prefix ("▁") as a normalizer: Llama-2 / Mistral files. Empty text stays empty.</summary>
internal sealed class PrependNormalizer(string prefix) : Normalizer
{
    public override string Normalize(string text) => text.Length == 0 ? text : prefix + text;
}

internal sealed class ReplaceNormalizer(UnicodeRegex pattern, string content) : Normalizer
{
    public override string Normalize(string text) => pattern.Replace(text, content);
}

internal sealed class LowercaseNormalizer : Normalizer
{
    public override string Normalize(string text) => text.ToLowerInvariant();
}

internal sealed class StripNormalizer(bool left, bool right) : Normalizer
{
    public override string Normalize(string text) =>
        left && right ? text.Trim() : left ? text.TrimStart() : right ? text.TrimEnd() : text;
}
