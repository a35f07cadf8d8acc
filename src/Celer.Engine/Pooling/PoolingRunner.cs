using System.Text.Json.Nodes;
using Celer.Models.Architectures;
using Celer.Models.Config;
using Celer.Models.Weights;

namespace Celer.Engine;

/// <summary>
/// vLLM's runner choice (<c>--runner</c>, <c>--convert</c>) and a pooling model's pooler. An architecture named for a
/// bare model (<c>Qwen3Model</c>, <c>LlamaModel</c>: no language-model head, as sentence-transformers saves its
/// Transformer module) is a pooling model, run as its <c>…ForCausalLM</c> layers; a causal LM becomes one with
/// <c>--runner pooling</c> or <c>--convert embed</c>. The pooler comes from the checkpoint's sentence-transformers files,
/// else vLLM's default for a decoder embedder (last token, normalized), then <c>--pooler-config</c>.
/// </summary>
internal static class PoolingRunner
{
    private const string BareModelSuffix = "Model";

    /// <summary>The config to build (its architecture renamed for a bare model), the pooler (null: text generation) and sentence-transformers' length cap.</summary>
    public static (ModelConfig Config, PoolerConfig? Pooler, int? MaxSeqLength) Resolve(EngineArgs args, string dir, ModelConfig config)
    {
        string architecture = config.Architecture;
        bool encoder = config.Encoder is not null;
        bool bare = !encoder && architecture.EndsWith(BareModelSuffix, StringComparison.Ordinal)
            && ModelRegistry.SupportedArchitectures.Contains(ModelConfig.LayersArchitecture(architecture));
        // A decoder classifier runs its causal LM's layers and scores with its own head.
        bool decoderClassifier = !encoder && config.Classifier is not null
            && ModelRegistry.SupportedArchitectures.Contains(ClassifierConfig.CausalLmOf(architecture));
        // Nothing to generate with: no head, or (EmbeddingGemma) attention that reads the tokens after each one.
        bool headless = bare || encoder || decoderClassifier || config.BidirectionalAttention;
        bool pooling = args.Runner == "pooling" || (args.Runner == "auto" && (headless || args.Convert is "embed" or "classify"));
        if (!pooling)
        {
            if (headless)
            {
                throw new ModelLoadException(config.BidirectionalAttention
                    ? $"'{dir}' is a {architecture} with bidirectional attention (use_bidirectional_attention, or is_causal false), which cannot generate text; serve it with --runner pooling."
                    : $"'{dir}' is a {architecture}, which has no language-model head to generate with; serve it with --runner pooling.");
            }

            return (config, null, null);
        }

        if (config.Classifier is not null && args.Convert == "embed")
        {
            throw new ModelLoadException($"'{dir}' is a sequence classifier ({architecture}); --convert embed turns a causal LM into an embedding model, not a classifier.");
        }

        if (bare)
        {
            config = config with { Architecture = ModelConfig.LayersArchitecture(architecture) };
        }
        else if (decoderClassifier)
        {
            config = config with { Architecture = ClassifierConfig.CausalLmOf(architecture) };
        }

        SentenceTransformersModel? st = SentenceTransformersLayout.Read(dir, crossEncoder: config.Classifier is not null);
        // vLLM's defaults: a classifier pools the first token of an encoder and the last of a decoder, as transformers'
        // heads read them; an encoder embedder its CLS token, a decoder embedder its last, normalized.
        PoolingType defaultType = encoder ? PoolingType.Cls : PoolingType.Last;
        var pooler = new PoolerConfig(st?.Pooling ?? defaultType, st?.Normalize ?? true, config.HiddenSize, MatryoshkaDimensions(dir, args.ParseHfOverrides()))
        {
            // sentence-transformers 4+ saves a CrossEncoder's activation beside config.json, older versions inside it.
            Classifier = config.Classifier is { CrossEncoderActivation: null } c && st?.CrossEncoderActivation is { } saved
                ? c with { CrossEncoderActivation = saved }
                : config.Classifier,
            WholeSequences = encoder || config.BidirectionalAttention,
            TokenTypes = config.Encoder?.TypeVocabSize ?? 0,
            Dense = st?.Dense ?? [],
            DefaultPrompt = st?.DefaultPrompt,
        };
        if (pooler.Dense.Count > 0 && pooler.Dense[0].InFeatures != config.HiddenSize)
        {
            throw new ModelLoadException($"'{dir}': the first Dense module takes {pooler.Dense[0].InFeatures} values, but the model's hidden size is {config.HiddenSize}.");
        }

        if (pooler.Classifier is { } classifier)
        {
            ClassifierActivation.Check(classifier);
        }

        try
        {
            pooler = pooler.WithOverrides(args.PoolerConfig);
        }
        catch (ArgumentException e)
        {
            throw new ModelLoadException(e.Message, e);
        }

        int? maxSeqLength = st?.MaxSeqLength;
        if (config.Encoder is { } encoderConfig)
        {
            // RoBERTa's positions start past its padding index: 514 position embeddings hold 512 tokens.
            int context = encoderConfig.ContextLength(config.MaxPositionEmbeddings);
            maxSeqLength = Math.Min(maxSeqLength ?? context, context);
        }

        return (config, pooler, maxSeqLength);
    }

    /// <summary>
    /// Whether config.json declares Matryoshka training, as vLLM reads it: <c>matryoshka_dimensions</c> (the lengths it
    /// was trained for) or <c>is_matryoshka</c> (any length); null when neither. <c>--hf-overrides</c> may set either.
    /// </summary>
    private static IReadOnlyList<int>? MatryoshkaDimensions(string dir, JsonObject? overrides)
    {
        JsonNode? root = JsonNode.Parse(File.ReadAllText(Path.Combine(dir, "config.json")));
        JsonNode? Field(string name) => overrides?[name] ?? root?[name];
        if (Field("matryoshka_dimensions") is JsonArray dims)
        {
            return [.. dims.Select(d => d!.GetValue<int>())];
        }

        return Field("is_matryoshka") is JsonValue flag && flag.TryGetValue(out bool on) && on ? [] : null;
    }
}
