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
        bool bare = architecture.EndsWith(BareModelSuffix, StringComparison.Ordinal)
            && ModelRegistry.SupportedArchitectures.Contains(architecture[..^BareModelSuffix.Length] + "ForCausalLM");
        bool pooling = args.Runner == "pooling" || (args.Runner == "auto" && (bare || args.Convert == "embed"));
        if (!pooling)
        {
            if (bare)
            {
                throw new ModelLoadException($"'{dir}' is a {architecture}, which has no language-model head to generate with; serve it with --runner pooling.");
            }

            return (config, null, null);
        }

        if (bare)
        {
            config = config with { Architecture = architecture[..^BareModelSuffix.Length] + "ForCausalLM" };
        }

        SentenceTransformersModel? st = SentenceTransformersLayout.Read(dir);
        var pooler = new PoolerConfig(st?.Pooling ?? PoolingType.Last, st?.Normalize ?? true, config.HiddenSize, MatryoshkaDimensions(dir, args.ParseHfOverrides()));
        try
        {
            pooler = pooler.WithOverrides(args.PoolerConfig);
        }
        catch (ArgumentException e)
        {
            throw new ModelLoadException(e.Message, e);
        }

        return (config, pooler, st?.MaxSeqLength);
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
