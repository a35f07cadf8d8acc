using System.Text.Json;
using System.Text.Json.Nodes;
using Celer.Models.Weights;

namespace Celer.Engine;

/// <summary>What a sentence-transformers checkpoint says about its pooling, read from the files the Hub carries.</summary>
/// <param name="Pooling">The Pooling module's mode; null when there is none (a CrossEncoder's modules are its Transformer alone).</param>
/// <param name="MaxSeqLength"><c>sentence_bert_config.json</c>'s <c>max_seq_length</c>: the longest input the model was trained for.</param>
/// <param name="CrossEncoderActivation">
/// <c>config_sentence_transformers.json</c>'s <c>activation_fn</c>, where sentence-transformers 4 and later save a
/// CrossEncoder's score activation (a torch class path); null when absent.
/// </param>
public sealed record SentenceTransformersModel(PoolingType? Pooling, bool Normalize, int? MaxSeqLength, string? CrossEncoderActivation = null)
{
    /// <summary>The Dense modules after the Pooling module, in order (none for most models).</summary>
    public IReadOnlyList<DenseModule> Dense { get; init; } = [];
}

/// <summary>
/// Reads a sentence-transformers model directory as the Hub has them: <c>modules.json</c> lists the modules in order,
/// each with a folder and a class path; the pooling module's <c>config.json</c> names its mode, a Normalize module
/// L2-normalizes the result, and <c>sentence_bert_config.json</c> caps the input length. Modules are recognized by the
/// last part of their class path (older and newer sentence-transformers spell the path differently) or, failing that,
/// by their folder's config; a module Celer cannot run (Dense projections, concatenated pooling modes) is refused by name.
/// </summary>
public static class SentenceTransformersLayout
{
    /// <summary>The model's pooling, or null when the directory has no modules.json.</summary>
    public static SentenceTransformersModel? Read(string dir)
    {
        string modulesPath = Path.Combine(dir, "modules.json");
        if (!File.Exists(modulesPath))
        {
            return null;
        }

        JsonArray modules = Parse(modulesPath) as JsonArray ?? throw new ModelLoadException($"'{modulesPath}' must hold a JSON array of modules.");
        PoolingType? pooling = null;
        bool normalize = false;
        var dense = new List<DenseModule>();
        foreach (JsonNode? module in modules)
        {
            string type = module?["type"]?.GetValue<string>() ?? "";
            string folder = Path.Combine(dir, module?["path"]?.GetValue<string>() ?? "");
            string kind = type[(type.LastIndexOf('.') + 1)..];
            string configPath = Path.Combine(folder, "config.json");
            JsonObject? config = kind is "Transformer" or "Normalize" || !File.Exists(configPath) ? null : Parse(configPath) as JsonObject;
            if (kind != "Pooling" && config is not null && config.Any(p => p.Key.StartsWith("pooling_mode", StringComparison.Ordinal)))
            {
                kind = "Pooling";
            }

            switch (kind)
            {
                case "Transformer":
                    break;
                case "Pooling":
                    pooling = ReadPooling(config, configPath);
                    break;
                case "Normalize":
                    normalize = true;
                    break;
                case "Dense" when pooling is not null && !normalize:
                    dense.Add(DenseModule.Read(folder));
                    break;
                case "Dense":
                    throw new ModelLoadException($"'{modulesPath}': Dense module '{module?["name"]}' is not between the Pooling and the Normalize module, where Celer applies it.");
                default:
                    throw new ModelLoadException($"'{modulesPath}': module '{module?["name"]}' of type '{type}' is not supported (Celer runs Transformer, Pooling, Dense and Normalize modules).");
            }
        }

        int? maxSeqLength = null;
        string bertConfig = Path.Combine(dir, "sentence_bert_config.json");
        if (File.Exists(bertConfig) && Parse(bertConfig)?["max_seq_length"] is JsonValue length && length.TryGetValue(out int max))
        {
            maxSeqLength = max;
        }

        string? activation = null;
        string stConfig = Path.Combine(dir, "config_sentence_transformers.json");
        if (File.Exists(stConfig) && Parse(stConfig)?["activation_fn"] is JsonValue fn && fn.TryGetValue(out string? name))
        {
            activation = name;
        }

        for (int i = 0; i < dense.Count; i++)
        {
            int expected = i == 0 ? -1 : dense[i - 1].OutFeatures;
            if (i > 0 && dense[i].InFeatures != expected)
            {
                throw new ModelLoadException($"'{modulesPath}': Dense module {i + 1} takes {dense[i].InFeatures} values but the one before it gives {expected}.");
            }
        }

        return new SentenceTransformersModel(pooling, normalize, maxSeqLength, activation) { Dense = dense };
    }

    /// <summary>The one pooling mode the Pooling module's config turns on (the booleans, or a newer single <c>pooling_mode</c> name).</summary>
    private static PoolingType ReadPooling(JsonObject? config, string path)
    {
        if (config is null)
        {
            throw new ModelLoadException($"The sentence-transformers Pooling module has no config at '{path}'.");
        }

        List<string> modes = config["pooling_mode"] is JsonValue single && single.TryGetValue(out string? name)
            ? [name]
            : [.. config.Where(p => p.Key.StartsWith("pooling_mode_", StringComparison.Ordinal) && p.Value is JsonValue v && v.TryGetValue(out bool on) && on)
                .Select(p => p.Key["pooling_mode_".Length..])];
        if (modes.Count != 1)
        {
            throw new ModelLoadException($"'{path}' turns on {(modes.Count == 0 ? "no pooling mode" : "the pooling modes " + string.Join(", ", modes) + " together")}; Celer pools with exactly one of cls_token, mean_tokens, max_tokens and lasttoken.");
        }

        return modes[0] switch
        {
            "cls_token" or "cls" => PoolingType.Cls,
            "mean_tokens" or "mean" => PoolingType.Mean,
            "lasttoken" => PoolingType.Last,
            "max_tokens" or "max" => PoolingType.Max,
            string other => throw new ModelLoadException($"'{path}': pooling mode '{other}' is not supported; Celer pools with cls_token, mean_tokens, max_tokens or lasttoken."),
        };
    }

    private static JsonNode? Parse(string path)
    {
        try
        {
            return JsonNode.Parse(File.ReadAllText(path));
        }
        catch (JsonException e)
        {
            throw new ModelLoadException($"'{path}' is not valid JSON: {e.Message}");
        }
    }
}
