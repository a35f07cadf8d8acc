namespace Celer.Engine;

/// <summary>What the engine needs to know about the loaded model.</summary>
/// <param name="MaxModelLen">The model's own context length (config.json); --max-model-len may lower it.</param>
/// <param name="EosTokenId">The tokenizer's EOS id; finishes a sequence with no stop reason unless ignore_eos.</param>
/// <param name="GenerationEosTokenIds">generation_config.json's eos_token_id list, treated as stop token ids.</param>
public sealed record EngineModelInfo(int VocabSize, int MaxModelLen, int? EosTokenId, IReadOnlyList<int>? GenerationEosTokenIds = null)
{
    /// <summary>A pooling model's pooler (<c>--runner pooling</c>); null for a generative model.</summary>
    public PoolerConfig? Pooler { get; init; }

    /// <summary>
    /// A vision-language model's image placeholder token (LLaVA's <c>image_token_index</c>): the chat template writes one
    /// per image part, and the engine expands each to the image's features. Null: the model takes text only.
    /// </summary>
    public int? ImageTokenId => Images?.ImageTokenId;

    /// <summary>A vision-language model's prompt processing (placeholder expansion, image preprocessing); null for text only.</summary>
    public Multimodal.ImagePrompts? Images { get; init; }
}
