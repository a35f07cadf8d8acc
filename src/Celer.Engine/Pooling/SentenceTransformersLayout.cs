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

    /// <summary>The prompt sentence-transformers puts before every text by default; null when none (or an empty one) is named.</summary>
    public SentenceTransformersPrompt? DefaultPrompt { get; init; }
}

/// <summary>
/// Reads a sentence-transformers model directory as the Hub has them: <c>modules.json</c> lists the modules in order,
/// each with a folder and a class path; the pooling module's <c>config.json</c> names its mode, a Normalize module
/// L2-normalizes the result, and <c>sentence_bert_config.json</c> caps the input length. Modules are recognized by the
/// last part of their class path (older and newer sentence-transformers spell the path differently) or, failing that,
/// by their folder's config; a module Celer cannot run (concatenated pooling modes, a Dense module out of place) is
/// refused by name. <c>config_sentence_transformers.json</c> names the default prompt and a CrossEncoder's activation.
/// </summary>
public static class SentenceTransformersLayout
{
    /// <summary>The model's pooling, or null when the directory has no modules.json.</summary>
    /// <param name="crossEncoder">
    /// Whether the model is a CrossEncoder (a classifier): its prompts are its config's alone, while a SentenceTransformer
    /// always knows the names <c>query</c> and <c>document</c> (empty unless the config sets them).
    /// </param>
    public static SentenceTransformersModel? Read(string dir, bool crossEncoder = false)
    {
        string modulesPath = Path.Combine(dir, "modules.json");
        if (!File.Exists(modulesPath))
        {
            return null;
        }

        JsonArray modules = Parse(modulesPath) as JsonArray ?? throw new ModelLoadException($"'{modulesPath}' must hold a JSON array of modules.");
        PoolingType? pooling = null;
        bool includePrompt = true;
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
                    (pooling, includePrompt) = ReadPooling(config, configPath);
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
        string stConfigPath = Path.Combine(dir, "config_sentence_transformers.json");
        JsonObject? stConfig = File.Exists(stConfigPath)
            ? Parse(stConfigPath) as JsonObject ?? throw new ModelLoadException($"'{stConfigPath}' must hold a JSON object.")
            : null;
        if (stConfig?["activation_fn"] is JsonValue fn && fn.TryGetValue(out string? name))
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

        return new SentenceTransformersModel(pooling, normalize, maxSeqLength, activation)
        {
            Dense = dense,
            DefaultPrompt = stConfig is null ? null : ReadDefaultPrompt(stConfig, stConfigPath, crossEncoder, includePrompt),
        };
    }

    /// <summary>
    /// The prompt <c>default_prompt_name</c> names, as sentence-transformers resolves it: a name missing from the prompts
    /// fails the load (sentence-transformers refuses it too), a prompt saved as null is empty, and an empty prompt is none.
    /// </summary>
    private static SentenceTransformersPrompt? ReadDefaultPrompt(JsonObject config, string path, bool crossEncoder, bool includePrompt)
    {
        Dictionary<string, string> prompts = crossEncoder ? new(StringComparer.Ordinal) : new(StringComparer.Ordinal) { ["query"] = "", ["document"] = "" };
        switch (config["prompts"])
        {
            case null:
                break;
            case JsonObject saved:
                foreach ((string key, JsonNode? value) in saved)
                {
                    prompts[key] = value switch
                    {
                        null => "",
                        JsonValue text when text.GetValueKind() == JsonValueKind.String => text.GetValue<string>(),
                        _ => throw new ModelLoadException($"'{path}': prompt '{key}' must be a string, got {value.ToJsonString()}."),
                    };
                }

                break;
            default:
                throw new ModelLoadException($"'{path}': prompts must be an object of prompt names and texts, got {config["prompts"]!.ToJsonString()}.");
        }

        string? name = config["default_prompt_name"] switch
        {
            null => null,
            JsonValue text when text.GetValueKind() == JsonValueKind.String => text.GetValue<string>(),
            var other => throw new ModelLoadException($"'{path}': default_prompt_name must be a string or null, got {other.ToJsonString()}."),
        };
        if (name is null)
        {
            return null;
        }

        if (!prompts.TryGetValue(name, out string? prompt))
        {
            throw new ModelLoadException($"'{path}': default_prompt_name '{name}' is not one of its prompts ({string.Join(", ", prompts.Keys.Select(k => $"'{k}'"))}).");
        }

        return prompt.Length == 0 ? null : new SentenceTransformersPrompt(name, prompt, includePrompt);
    }

    /// <summary>
    /// The one pooling mode the Pooling module's config turns on (the booleans, or a newer single <c>pooling_mode</c>
    /// name), and its <c>include_prompt</c> (true when absent, as sentence-transformers' default).
    /// </summary>
    private static (PoolingType Type, bool IncludePrompt) ReadPooling(JsonObject? config, string path)
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

        bool includePrompt = config["include_prompt"] switch
        {
            null when !config.ContainsKey("include_prompt") => true,
            JsonValue flag when flag.GetValueKind() is JsonValueKind.True or JsonValueKind.False => flag.GetValue<bool>(),
            var other => throw new ModelLoadException($"'{path}': include_prompt must be true or false, got {other?.ToJsonString() ?? "null"}."),
        };
        PoolingType type = modes[0] switch
        {
            "cls_token" or "cls" => PoolingType.Cls,
            "mean_tokens" or "mean" => PoolingType.Mean,
            "lasttoken" => PoolingType.Last,
            "max_tokens" or "max" => PoolingType.Max,
            string other => throw new ModelLoadException($"'{path}': pooling mode '{other}' is not supported; Celer pools with cls_token, mean_tokens, max_tokens or lasttoken."),
        };
        return (type, includePrompt);
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
