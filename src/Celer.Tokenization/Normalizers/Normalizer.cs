using System.Globalization;
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
            "StripAccents" => new StripAccentsNormalizer(),
            "BertNormalizer" => BertNormalizer.Parse(j, path),
            "Precompiled" => PrecompiledNormalizer.Parse(j, path),
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
    public override string Normalize(string text) => Lowercase(text);

    /// <summary>
    /// HF's <c>NormalizedString::lowercase</c>: Rust's <c>char::to_lowercase</c> on each character. That is the
    /// simple mapping .NET has too, except İ (U+0130), whose full lowercase is "i̇" (the one unconditional
    /// multi-character lowercase in SpecialCasing.txt); there is no final-sigma rule per character.
    /// </summary>
    public static string Lowercase(string text)
    {
        int i = 0;
        while (i < text.Length && text[i] < 0x80 && !char.IsAsciiLetterUpper(text[i])) i++;
        if (i == text.Length) return text;

        var sb = new StringBuilder(text.Length);
        sb.Append(text, 0, i);
        Span<char> utf16 = stackalloc char[2];
        foreach (var rune in text.AsSpan(i).EnumerateRunes())
        {
            if (rune.Value == 0x130)
            {
                sb.Append("i\u0307");
                continue;
            }
            int n = Rune.ToLowerInvariant(rune).EncodeToUtf16(utf16);
            sb.Append(utf16[..n]);
        }
        return sb.ToString();
    }
}

/// <summary>HF's StripAccents: drops every combining mark (Mn, Mc, Me); a Sequence puts NFD or NFKD before it.</summary>
internal sealed class StripAccentsNormalizer : Normalizer
{
    public override string Normalize(string text)
    {
        var sb = new StringBuilder(text.Length);
        for (int i = 0; i < text.Length;)
        {
            int c = BertCharacters.CodePointAt(text, i, out int length);
            if (CharUnicodeInfo.GetUnicodeCategory(c) is not (UnicodeCategory.NonSpacingMark or UnicodeCategory.SpacingCombiningMark
                or UnicodeCategory.EnclosingMark)) sb.Append(text, i, length);
            i += length;
        }
        return sb.ToString();
    }
}

internal sealed class StripNormalizer(bool left, bool right) : Normalizer
{
    public override string Normalize(string text) =>
        left && right ? text.Trim() : left ? text.TrimStart() : right ? text.TrimEnd() : text;
}
