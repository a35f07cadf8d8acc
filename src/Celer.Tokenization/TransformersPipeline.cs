using System.Text.Json;
using Celer.Tokenization.Normalizers;
using Celer.Tokenization.PreTokenizers;

namespace Celer.Tokenization;

/// <summary>
/// Where transformers 5 does not run tokenizer.json as written but rebuilds the pipeline from the tokenizer's class, as
/// vLLM (which tokenizes through transformers) then does too. Measured with transformers 5.17 on the GPU machine
/// (tools/reference/tokenizer_reference.py; tests/fixtures/tokenizers-transformers5/):
/// <list type="bullet">
/// <item><c>LlamaTokenizer</c> (Llama 2 and SentencePiece-era files, whose tokenizer.json prepends "▁" with a
/// Prepend + Replace normalizer) runs no normalizer and a Metaspace pre-tokenizer that prepends "▁" only where the text
/// does not already start with one: three spaces are "▁▁▁" there, "▁▁▁▁" in the file. The prepend scheme follows the
/// class's settings: always, first (<c>legacy: false</c>) or never (<c>add_prefix_space: false</c>).</item>
/// <item>The same files under a Mistral config (<c>model_type</c> mistral or mixtral) load as transformers'
/// <c>TokenizersBackend</c>, which runs the file as written.</item>
/// <item>Llama 3, Qwen2/3 and Gemma 3 files give what the file gives.</item>
/// </list>
/// </summary>
internal static class TransformersPipeline
{
    private const char Metaspace = '\u2581';

    /// <summary>The normalizer and pre-tokenizer transformers 5 runs for this file, class and model type.</summary>
    public static (Normalizer? Normalizer, PreTokenizer? PreTokenizer) For(
        JsonElement? normalizerJson, JsonElement? preTokenizerJson, Normalizer? normalizer, PreTokenizer? preTokenizer,
        TokenizerConfig? config, string? modelType)
    {
        if (config?.TokenizerClass is not ("LlamaTokenizer" or "LlamaTokenizerFast") || modelType is "mistral" or "mixtral"
            || preTokenizerJson is not null || !IsSentencePiecePrepend(normalizerJson))
        {
            return (normalizer, preTokenizer);
        }

        PrependScheme scheme = config.AddPrefixSpace == false ? PrependScheme.Never
            : config.Legacy == false ? PrependScheme.First
            : PrependScheme.Always;
        return (null, new MetaspacePreTokenizer(Metaspace, scheme, split: false));
    }

    /// <summary>The SentencePiece converters' normalizer: Sequence [Prepend "▁", Replace " " → "▁"].</summary>
    private static bool IsSentencePiecePrepend(JsonElement? json)
    {
        if (json is not { ValueKind: JsonValueKind.Object } n || Type(n) != "Sequence"
            || !n.TryGetProperty("normalizers", out JsonElement list) || list.ValueKind != JsonValueKind.Array || list.GetArrayLength() != 2)
        {
            return false;
        }

        JsonElement prepend = list[0], replace = list[1];
        return Type(prepend) == "Prepend" && Text(prepend, "prepend") == "\u2581"
            && Type(replace) == "Replace" && Text(replace, "content") == "\u2581"
            && replace.TryGetProperty("pattern", out JsonElement pattern) && pattern.ValueKind == JsonValueKind.Object
            && Text(pattern, "String") == " ";
    }

    private static string? Type(JsonElement e) => Text(e, "type");

    private static string? Text(JsonElement e, string name) =>
        e.ValueKind == JsonValueKind.Object && e.TryGetProperty(name, out JsonElement v) && v.ValueKind == JsonValueKind.String ? v.GetString() : null;
}
