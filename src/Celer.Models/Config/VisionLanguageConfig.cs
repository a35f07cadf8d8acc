using System.Text.Json;
using System.Text.Json.Nodes;
using Celer.Models.Backend;

namespace Celer.Models.Config;

/// <summary>
/// What a LLaVA-style vision-language checkpoint (<c>LlavaForConditionalGeneration</c>) adds to its language model's
/// <see cref="ModelConfig"/>: the vision tower, the projector between them, and the image placeholder token. The fields
/// and defaults are transformers' <c>LlavaConfig</c>'s.
/// </summary>
/// <param name="Architecture">The checkpoint's own <c>architectures</c> entry (the language model's is in <see cref="ModelConfig.Architecture"/>).</param>
/// <param name="ImageTokenId">The placeholder the chat template writes once per image (<c>image_token_index</c>, or <c>image_token_id</c>).</param>
/// <param name="FeatureLayers">
/// The tower's hidden states the features are taken from, as counts of layers run (transformers'
/// <c>hidden_states[i]</c>: 0 is the pre-norm embeddings, the tower's layer count its last layer's output); several are
/// concatenated along the hidden size in order.
/// </param>
/// <param name="DropClassToken">vision_feature_select_strategy "default" (drop the first row: CLIP's class token; a SigLIP
/// tower, which has none, loses its first patch, as transformers does) rather than "full".</param>
/// <param name="ProjectorActivation">projector_hidden_act, between the projector's two linears.</param>
public sealed record VisionLanguageConfig(
    string Architecture,
    int ImageTokenId,
    VisionTowerConfig Vision,
    IReadOnlyList<int> FeatureLayers,
    bool DropClassToken,
    GeluForm ProjectorActivation,
    bool ProjectorBias)
{
    public const string Llava = "LlavaForConditionalGeneration";

    private const string F = ModelConfig.FileName;

    /// <summary>Features per image: one per row of the tower's sequence, less the first with the "default" strategy.</summary>
    public int FeaturesPerImage => Vision.Sequence - (DropClassToken ? 1 : 0);

    /// <summary>The projector's input width: the selected layers' hidden states side by side.</summary>
    public int ProjectorInputSize => Vision.HiddenSize * FeatureLayers.Count;

    /// <summary>The tower layers that run: up to the deepest one the features read (vLLM drops the rest at load too).</summary>
    public int LayersRun => FeatureLayers.Max();

    public static bool IsVisionLanguage(string architecture) => architecture == Llava;

    /// <summary>
    /// The language model's config as transformers builds it from a vision-language config.json: <c>text_config</c> with
    /// its model type's defaults under the fields the file leaves out (transformers writes only those that differ), the
    /// top-level dtype and quantization where the text config has none, and the causal LM of that model type as its
    /// architecture.
    /// </summary>
    internal static JsonObject TextRoot(JsonObject top)
    {
        JsonObject text = top["text_config"] is JsonObject given ? (JsonObject)given.DeepClone() : new JsonObject { ["model_type"] = "llama" };
        string modelType = text["model_type"]?.GetValue<string>() ?? "llama";
        if (!TextDefaults.TryGetValue(modelType, out (string Architecture, (string, JsonNode)[] Fields) defaults))
        {
            throw new ModelConfigException(
                $"{F}: text_config's model_type '{modelType}' is not a language model Celer runs inside {Llava}; supported: {string.Join(", ", TextDefaults.Keys)}");
        }

        foreach ((string name, JsonNode value) in defaults.Fields)
        {
            if (!text.ContainsKey(name))
            {
                text[name] = value.DeepClone();
            }
        }

        text["architectures"] = new JsonArray(defaults.Architecture);
        foreach (string inherited in new[] { "torch_dtype", "dtype", "quantization_config", "tie_word_embeddings" })
        {
            if (!text.ContainsKey(inherited) && top[inherited] is { } value)
            {
                text[inherited] = value.DeepClone();
            }
        }

        return text;
    }

    internal static VisionLanguageConfig Parse(JsonElement top, string architecture)
    {
        int imageToken = JsonFields.OptionalInt(top, "image_token_index", F) ?? JsonFields.OptionalInt(top, "image_token_id", F) ?? 32000;
        JsonElement vision = JsonFields.TryGet(top, "vision_config", out JsonElement v) && v.ValueKind == JsonValueKind.Object
            ? v
            : throw new ModelConfigException($"{F}: {architecture} needs a 'vision_config' object");
        VisionTowerConfig tower = VisionTowerConfig.Parse(vision);
        string strategy = JsonFields.OptionalString(top, "vision_feature_select_strategy", F) ?? "default";
        if (strategy is not ("default" or "full"))
        {
            throw new ModelConfigException($"{F}: vision_feature_select_strategy must be 'default' or 'full', got '{strategy}'");
        }

        return new VisionLanguageConfig(
            architecture,
            imageToken >= 0 ? imageToken : throw new ModelConfigException($"{F}: image_token_index must not be negative, got {imageToken}"),
            tower,
            FeatureLayersOf(top, tower.NumHiddenLayers),
            strategy == "default",
            VisionActivations.Parse(JsonFields.OptionalString(top, "projector_hidden_act", F) ?? "gelu", "projector_hidden_act"),
            JsonFields.OptionalBool(top, "multimodal_projector_bias", F) ?? true);
    }

    /// <summary>vision_feature_layer: an index into the tower's hidden_states (negative from the end), or a list of them.</summary>
    private static int[] FeatureLayersOf(JsonElement top, int layers)
    {
        int[] given = JsonFields.TryGet(top, "vision_feature_layer", out JsonElement value) && value.ValueKind != JsonValueKind.Null
            ? JsonFields.OptionalIntOrIntList(top, "vision_feature_layer", F)!
            : [-2];
        if (given.Length == 0)
        {
            throw new ModelConfigException($"{F}: vision_feature_layer must name at least one layer");
        }

        // hidden_states has layers + 1 entries: the embeddings, then each layer's output.
        return [.. given.Select(i => i switch
        {
            >= 0 when i <= layers => i,
            < 0 when i >= -(layers + 1) => layers + 1 + i,
            _ => throw new ModelConfigException($"{F}: vision_feature_layer {i} is outside the tower's {layers + 1} hidden states"),
        })];
    }

    // transformers' defaults of the language models LLaVA checkpoints pair with (LlamaConfig, MistralConfig, Qwen2Config):
    // a saved text_config holds only the fields that differ from them.
    private static readonly Dictionary<string, (string Architecture, (string, JsonNode)[] Fields)> TextDefaults = new()
    {
        ["llama"] = ("LlamaForCausalLM",
        [
            ("vocab_size", 32000), ("hidden_size", 4096), ("intermediate_size", 11008), ("num_hidden_layers", 32),
            ("num_attention_heads", 32), ("max_position_embeddings", 2048), ("rms_norm_eps", 1e-6), ("rope_theta", 10000.0),
            ("hidden_act", "silu"), ("tie_word_embeddings", false),
        ]),
        ["mistral"] = ("MistralForCausalLM",
        [
            ("vocab_size", 32000), ("hidden_size", 4096), ("intermediate_size", 14336), ("num_hidden_layers", 32),
            ("num_attention_heads", 32), ("num_key_value_heads", 8), ("max_position_embeddings", 131072), ("rms_norm_eps", 1e-6),
            ("rope_theta", 10000.0), ("sliding_window", 4096), ("hidden_act", "silu"), ("tie_word_embeddings", false),
        ]),
        ["qwen2"] = ("Qwen2ForCausalLM",
        [
            ("vocab_size", 151936), ("hidden_size", 4096), ("intermediate_size", 22016), ("num_hidden_layers", 32),
            ("num_attention_heads", 32), ("num_key_value_heads", 32), ("max_position_embeddings", 32768), ("rms_norm_eps", 1e-6),
            ("rope_theta", 10000.0), ("hidden_act", "silu"), ("tie_word_embeddings", false),
        ]),
    };
}

/// <summary>The ViT families LLaVA checkpoints pair with.</summary>
public enum VisionTower
{
    /// <summary>transformers' <c>CLIPVisionModel</c>: a class token, a LayerNorm before the layers, a patch convolution without bias.</summary>
    Clip,

    /// <summary>transformers' <c>SiglipVisionModel</c>: patches only, no LayerNorm before the layers, a patch convolution with a bias.</summary>
    Siglip,
}

/// <summary>
/// transformers' <c>CLIPVisionConfig</c> or <c>SiglipVisionConfig</c>: a pre-norm ViT over square patches, with
/// learned absolute positions and bidirectional attention.
/// </summary>
public sealed record VisionTowerConfig(
    VisionTower Tower, int HiddenSize, int IntermediateSize, int NumHiddenLayers, int NumAttentionHeads, int NumChannels, int ImageSize,
    int PatchSize, GeluForm HiddenAct, double LayerNormEps)
{
    private const string F = ModelConfig.FileName;

    public int HeadDim => HiddenSize / NumAttentionHeads;

    /// <summary>Patches per image.</summary>
    public int Patches => (ImageSize / PatchSize) * (ImageSize / PatchSize);

    /// <summary>CLIP's class token, in front of the patches.</summary>
    public bool ClassToken => Tower == VisionTower.Clip;

    /// <summary>CLIP's LayerNorm of the embeddings before the first layer (<c>pre_layrnorm</c>).</summary>
    public bool PreNorm => Tower == VisionTower.Clip;

    /// <summary>SigLIP's bias on the patch convolution.</summary>
    public bool PatchBias => Tower == VisionTower.Siglip;

    /// <summary>The tower's sequence per image: the patches, after the class token where there is one.</summary>
    public int Sequence => Patches + (ClassToken ? 1 : 0);

    internal static VisionTowerConfig Parse(JsonElement vision)
    {
        string type = JsonFields.OptionalString(vision, "model_type", F) ?? "clip_vision_model";
        VisionTower tower = type switch
        {
            "clip_vision_model" => VisionTower.Clip,
            "siglip_vision_model" => VisionTower.Siglip,
            _ => throw new ModelConfigException($"{F}: vision_config model_type '{type}': Celer runs CLIP (clip_vision_model) and SigLIP (siglip_vision_model) vision towers"),
        };

        // CLIPVisionConfig's or SiglipVisionConfig's defaults, for the fields a saved config leaves out.
        bool clip = tower == VisionTower.Clip;
        int Field(string name, int fallback) => JsonFields.OptionalInt(vision, name, F) is { } given
            ? given > 0 ? given : throw new ModelConfigException($"{F}: vision_config.{name} must be positive, got {given}")
            : fallback;
        var config = new VisionTowerConfig(
            tower, Field("hidden_size", 768), Field("intermediate_size", 3072), Field("num_hidden_layers", 12), Field("num_attention_heads", 12),
            Field("num_channels", 3), Field("image_size", 224), Field("patch_size", clip ? 32 : 16),
            VisionActivations.Parse(JsonFields.OptionalString(vision, "hidden_act", F) ?? (clip ? "quick_gelu" : "gelu_pytorch_tanh"), "vision_config.hidden_act"),
            JsonFields.OptionalDouble(vision, "layer_norm_eps", F) ?? (clip ? 1e-5 : 1e-6));
        if (config.HiddenSize % config.NumAttentionHeads != 0)
        {
            throw new ModelConfigException($"{F}: vision_config.hidden_size ({config.HiddenSize}) is not divisible by num_attention_heads ({config.NumAttentionHeads})");
        }

        if (config.ImageSize % config.PatchSize != 0)
        {
            throw new ModelConfigException($"{F}: vision_config.image_size ({config.ImageSize}) is not a multiple of patch_size ({config.PatchSize})");
        }

        if (config.LayerNormEps <= 0)
        {
            throw new ModelConfigException($"{F}: vision_config.layer_norm_eps must be positive, got {config.LayerNormEps}");
        }

        return config;
    }
}

internal static class VisionActivations
{
    public static GeluForm Parse(string name, string field) => name switch
    {
        "gelu" => GeluForm.Erf,
        "gelu_pytorch_tanh" or "gelu_new" => GeluForm.Tanh,
        "quick_gelu" => GeluForm.Quick,
        _ => throw new ModelConfigException($"{ModelConfig.FileName}: {field} '{name}' is not one Celer runs (gelu, gelu_pytorch_tanh, gelu_new, quick_gelu)"),
    };
}
