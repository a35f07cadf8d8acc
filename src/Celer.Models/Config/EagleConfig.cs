using System.Text.Json;

namespace Celer.Models.Config;

/// <summary>Which EAGLE draft head a checkpoint holds.</summary>
public enum EagleKind
{
    /// <summary>
    /// EAGLE-1 (and its HASS variant): fc([embedding, hidden]) into one Llama layer without an input norm, whose output
    /// the target's LM head reads; fed the target's final normalized hidden state.
    /// </summary>
    Eagle,

    /// <summary>
    /// EAGLE-3: one Llama layer whose attention reads [input_layernorm(embedding), hidden_norm(hidden)], a final norm and
    /// an LM head over a draft vocabulary of its own (<c>d2t</c> maps it to the target's); fed fc() of three of the
    /// target's layers' inputs side by side.
    /// </summary>
    Eagle3,
}

/// <summary>
/// An EAGLE draft head's config.json, in the public layouts vLLM loads (EAGLE's <c>LlamaForCausalLM</c> /
/// <c>EagleLlamaForCausalLM</c>, EAGLE-3's <c>LlamaForCausalLMEagle3</c>): a Llama config of one layer (<see cref="Layer"/>),
/// and the fields that say how the head meets its target.
/// </summary>
public sealed record EagleConfig
{
    private const string F = "config.json";

    public required EagleKind Kind { get; init; }

    /// <summary>The head's layer: its widths, heads, norm epsilon and RoPE; <c>VocabSize</c> is the target's vocabulary.</summary>
    public required ModelConfig Layer { get; init; }

    /// <summary>The rows of the head's LM head (EAGLE-3's <c>draft_vocab_size</c>; the target's vocabulary when absent).</summary>
    public required int DraftVocabSize { get; init; }

    /// <summary>The width of the target hidden states fc() reads, per layer (<c>target_hidden_size</c>; the head's own when absent).</summary>
    public required int TargetHiddenSize { get; init; }

    /// <summary>
    /// EAGLE-3: the target layers whose inputs the head is fed (<c>eagle_aux_hidden_state_layer_ids</c>, at the top level or
    /// in <c>eagle_config</c>); null: vLLM's default for the target, layers 2, L / 2 and L − 3.
    /// </summary>
    public int[]? AuxLayers { get; init; }

    /// <summary>EAGLE-3's <c>norm_before_residual</c>: the residual starts from hidden_norm(hidden) rather than the hidden state.</summary>
    public bool NormBeforeResidual { get; init; }

    /// <summary>EAGLE-1's HASS variant (<c>add_para_norm</c>): the embedding and the hidden state are each normalized before fc().</summary>
    public bool NormalizesInputs { get; init; }

    /// <summary>
    /// Reads <paramref name="directory"/>'s config.json for <paramref name="kind"/> (the method the user named), refusing by
    /// name what Celer does not run: more than one layer, a head of the other kind, a non-Llama layer.
    /// </summary>
    public static EagleConfig Load(string directory, EagleKind kind)
    {
        string path = Path.Combine(directory, F);
        if (!File.Exists(path))
        {
            throw new ModelConfigException($"{F} not found in the EAGLE head's directory '{directory}'");
        }

        string json = File.ReadAllText(path);
        ModelConfig layer = ModelConfig.Parse(json);
        using JsonDocument doc = JsonDocument.Parse(json);
        JsonElement root = doc.RootElement;
        bool eagle3Layout = layer.Architecture.Contains("Eagle3", StringComparison.Ordinal);
        if (kind == EagleKind.Eagle && eagle3Layout)
        {
            throw new ModelConfigException($"'{directory}' holds an EAGLE-3 head ({layer.Architecture}): use the method \"eagle3\".");
        }

        if (layer.ModelType is not ("llama" or ""))
        {
            throw new ModelConfigException($"{F}: EAGLE heads with model_type '{layer.ModelType}' are not supported; Celer runs Llama-layer heads.");
        }

        if (layer.NumHiddenLayers != 1)
        {
            throw new ModelConfigException($"{F}: the EAGLE head has {layer.NumHiddenLayers} layers; Celer runs heads of one layer (as the published EAGLE and EAGLE-3 heads are).");
        }

        JsonElement eagleConfig = JsonFields.TryGet(root, "eagle_config", out JsonElement e) && e.ValueKind == JsonValueKind.Object ? e : default;
        if (eagleConfig.ValueKind == JsonValueKind.Object && JsonFields.OptionalBool(eagleConfig, "use_aux_hidden_state", F) == false)
        {
            throw new ModelConfigException($"{F}: eagle_config.use_aux_hidden_state is false; Celer runs EAGLE-3 heads on the target's auxiliary hidden states.");
        }

        int[]? aux = JsonFields.OptionalIntOrIntList(root, "eagle_aux_hidden_state_layer_ids", F)
            ?? (eagleConfig.ValueKind == JsonValueKind.Object ? JsonFields.OptionalIntOrIntList(eagleConfig, "eagle_aux_hidden_state_layer_ids", F) : null);
        if (aux is { Length: 0 })
        {
            throw new ModelConfigException($"{F}: eagle_aux_hidden_state_layer_ids is empty.");
        }

        int draftVocab = JsonFields.OptionalInt(root, "draft_vocab_size", F) ?? layer.VocabSize;
        if (draftVocab <= 0 || draftVocab > layer.VocabSize)
        {
            throw new ModelConfigException($"{F}: draft_vocab_size ({draftVocab}) must be positive and at most vocab_size ({layer.VocabSize}).");
        }

        int targetHidden = JsonFields.OptionalInt(root, "target_hidden_size", F) ?? layer.HiddenSize;
        if (kind == EagleKind.Eagle && (draftVocab != layer.VocabSize || targetHidden != layer.HiddenSize))
        {
            throw new ModelConfigException($"{F}: an EAGLE-1 head reads the target's hidden states and LM head as they are: draft_vocab_size and target_hidden_size must be the target's.");
        }

        return new EagleConfig
        {
            Kind = kind,
            Layer = layer,
            DraftVocabSize = draftVocab,
            TargetHiddenSize = targetHidden,
            AuxLayers = kind == EagleKind.Eagle3 ? aux : null,
            NormBeforeResidual = JsonFields.OptionalBool(root, "norm_before_residual", F) ?? false,
            NormalizesInputs = JsonFields.OptionalBool(root, "add_para_norm", F) ?? false,
        };
    }

    /// <summary>
    /// The target layers whose inputs an EAGLE-3 head is fed (<see cref="AuxLayers"/>, else vLLM's 2, L / 2, L − 3), or
    /// EAGLE-1's final normalized hidden state (layer L), checked against the target's <paramref name="targetLayers"/>.
    /// </summary>
    public int[] TargetLayers(int targetLayers)
    {
        int[] layers = Kind == EagleKind.Eagle ? [targetLayers] : AuxLayers ?? [2, targetLayers / 2, targetLayers - 3];
        if (Kind == EagleKind.Eagle3 && layers.Any(l => l < 0 || l >= targetLayers))
        {
            throw new ModelConfigException($"The EAGLE-3 head reads the inputs of target layers [{string.Join(", ", layers)}], but the target has {targetLayers} layers.");
        }

        return layers;
    }
}
