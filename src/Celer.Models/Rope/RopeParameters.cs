using System.Text.Json;
using Celer.Models.Config;

namespace Celer.Models.Rope;

/// <summary>The RoPE variants of transformers' <c>ROPE_INIT_FUNCTIONS</c> that this engine implements.</summary>
public enum RopeType
{
    /// <summary>Original RoPE: <c>inv_freq[i] = 1 / theta^(2i/dim)</c>.</summary>
    Default,
    /// <summary>Position interpolation: every frequency divided by <c>factor</c>.</summary>
    Linear,
    /// <summary>Dynamic NTK: theta grows with the sequence length once it passes <c>max_position_embeddings</c>.</summary>
    Dynamic,
    /// <summary>Llama 3.1: low frequencies divided by <c>factor</c>, high ones kept, a smooth ramp between.</summary>
    Llama3,
    /// <summary>YaRN: NTK-by-parts interpolation plus an attention (cos/sin) scaling.</summary>
    Yarn,
    /// <summary>
    /// LongRoPE (Phi-3, Phi-4-mini): each frequency divided by its own factor, the short list up to the original
    /// context and the long list beyond it (picked from the sequence length, as dynamic NTK), plus an attention scaling.
    /// </summary>
    LongRope,
}

/// <summary>
/// RoPE settings from config.json, normalized from both generations of the format:
/// transformers 4.x (<c>rope_theta</c> at the top level, <c>rope_scaling</c> with <c>type</c> or
/// <c>rope_type</c>) and transformers 5.x (<c>rope_parameters</c> holding <c>rope_type</c>,
/// <c>rope_theta</c> and the rest). Precedence follows transformers 5's
/// <c>convert_rope_params_to_dict</c>/<c>standardize_rope_params</c>: a non-empty <c>rope_scaling</c>
/// wins over <c>rope_parameters</c>; a value inside the dict wins over the top-level field; a
/// top-level <c>original_max_position_embeddings</c> wins over the dict's (Phi-3 style).
/// </summary>
public sealed record RopeParameters
{
    public RopeType RopeType { get; init; } = RopeType.Default;

    /// <summary><c>rope_theta</c>, the base of the frequencies; transformers' default is 10000.</summary>
    public double Theta { get; init; } = 10000.0;

    /// <summary>Fraction of the head dimension that is rotated (<c>partial_rotary_factor</c>); 1 rotates all of it.</summary>
    public double PartialRotaryFactor { get; init; } = 1.0;

    /// <summary>Context extension factor (linear, dynamic, llama3, yarn); 1 for default RoPE.</summary>
    public double Factor { get; init; } = 1.0;

    /// <summary>Llama 3: wavelengths above <c>original / low_freq_factor</c> are fully interpolated.</summary>
    public double LowFreqFactor { get; init; } = 1.0;

    /// <summary>Llama 3: wavelengths below <c>original / high_freq_factor</c> are kept.</summary>
    public double HighFreqFactor { get; init; } = 4.0;

    /// <summary>Pre-extension context length (llama3, yarn); defaults to <c>max_position_embeddings</c>.</summary>
    public int? OriginalMaxPositionEmbeddings { get; init; }

    /// <summary>LongRoPE: the per-frequency divisors up to the original context (<c>short_factor</c>, rotary_dim / 2 of them).</summary>
    public IReadOnlyList<double>? ShortFactor { get; init; }

    /// <summary>LongRoPE: the per-frequency divisors beyond the original context (<c>long_factor</c>).</summary>
    public IReadOnlyList<double>? LongFactor { get; init; }

    /// <summary>YaRN: rotations that bound the extrapolated (fast) band; <c>beta_fast</c>, default 32.</summary>
    public double BetaFast { get; init; } = 32.0;

    /// <summary>YaRN: rotations that bound the interpolated (slow) band; <c>beta_slow</c>, default 1.</summary>
    public double BetaSlow { get; init; } = 1.0;

    /// <summary>YaRN (DeepSeek style): <c>mscale</c>; used only together with <see cref="MscaleAllDim"/>.</summary>
    public double? Mscale { get; init; }

    /// <summary>YaRN (DeepSeek style): <c>mscale_all_dim</c>.</summary>
    public double? MscaleAllDim { get; init; }

    /// <summary>YaRN, LongRoPE: explicit cos/sin scaling (<c>attention_factor</c>); derived from the factor when absent.</summary>
    public double? AttentionFactor { get; init; }

    /// <summary>YaRN: round the correction range to whole dimensions (<c>truncate</c>, default true; gpt-oss sets false).</summary>
    public bool Truncate { get; init; } = true;

    private static readonly string[] SupportedTypes = ["default", "linear", "dynamic", "llama3", "yarn", "longrope"];

    /// <summary>Reads the RoPE settings of a parsed config.json root object.</summary>
    internal static RopeParameters Parse(JsonElement root, int maxPositionEmbeddings, string file)
    {
        JsonElement dict = default;
        bool hasDict = false;
        if (JsonFields.TryGet(root, "rope_scaling", out var scaling) && !IsEmptyObject(scaling))
        {
            dict = RequireObject(scaling, "rope_scaling", file);
            hasDict = true;
        }
        else if (JsonFields.TryGet(root, "rope_parameters", out var parameters))
        {
            dict = RequireObject(parameters, "rope_parameters", file);
            hasDict = true;
            RejectPerLayerParameters(dict, file);
        }

        string typeName = (hasDict ? JsonFields.OptionalString(dict, "rope_type", file) ?? JsonFields.OptionalString(dict, "type", file) : null)
            ?? "default";
        double theta = (hasDict ? JsonFields.OptionalDouble(dict, "rope_theta", file) : null)
            ?? JsonFields.OptionalDouble(root, "rope_theta", file)
            ?? 10000.0;
        double partial = (hasDict ? JsonFields.OptionalDouble(dict, "partial_rotary_factor", file) : null)
            ?? JsonFields.OptionalDouble(root, "partial_rotary_factor", file)
            ?? 1.0;
        if (theta <= 0)
        {
            throw new ModelConfigException($"{file}: field 'rope_theta' must be positive, got {theta}");
        }
        if (partial <= 0 || partial > 1)
        {
            throw new ModelConfigException($"{file}: field 'partial_rotary_factor' must be in (0, 1], got {partial}");
        }

        var p = new RopeParameters { Theta = theta, PartialRotaryFactor = partial };
        switch (typeName)
        {
            case "default":
                return p;
            case "linear":
                return p with { RopeType = RopeType.Linear, Factor = RequiredFactor(dict, file) };
            case "dynamic":
                return p with { RopeType = RopeType.Dynamic, Factor = RequiredFactor(dict, file) };
            case "llama3":
            {
                double low = JsonFields.RequiredDouble(dict, "low_freq_factor", file);
                double high = JsonFields.RequiredDouble(dict, "high_freq_factor", file);
                if (high <= low)
                {
                    // transformers only warns, then divides by (high - low) and produces inf/NaN frequencies.
                    throw new ModelConfigException($"{file}: field 'high_freq_factor' ({high}) must be greater than 'low_freq_factor' ({low})");
                }
                return p with
                {
                    RopeType = RopeType.Llama3,
                    Factor = RequiredFactor(dict, file),
                    LowFreqFactor = low,
                    HighFreqFactor = high,
                    OriginalMaxPositionEmbeddings = OriginalMax(root, dict, maxPositionEmbeddings, file),
                };
            }
            case "yarn":
            {
                int original = OriginalMax(root, dict, maxPositionEmbeddings, file);
                // transformers 5: an explicit factor wins; only a missing one is implied by the two lengths.
                double factor = OptionalFactor(dict, file) ?? (double)maxPositionEmbeddings / original;
                return p with
                {
                    RopeType = RopeType.Yarn,
                    Factor = factor,
                    OriginalMaxPositionEmbeddings = original,
                    AttentionFactor = JsonFields.OptionalDouble(dict, "attention_factor", file),
                    // transformers reads these with `or`, so 0 also means "use the default".
                    BetaFast = NonZeroOr(JsonFields.OptionalDouble(dict, "beta_fast", file), 32.0),
                    BetaSlow = NonZeroOr(JsonFields.OptionalDouble(dict, "beta_slow", file), 1.0),
                    Mscale = JsonFields.OptionalDouble(dict, "mscale", file),
                    MscaleAllDim = JsonFields.OptionalDouble(dict, "mscale_all_dim", file),
                    Truncate = JsonFields.OptionalBool(dict, "truncate", file) ?? true,
                };
            }
            case "longrope" or "su":   // "su" is the name early Phi-3 configs used; transformers reads it as longrope
            {
                // transformers: with a top-level original_max_position_embeddings (Phi-3) the factor is the ratio of
                // the two lengths, whatever the dict says; otherwise the dict's factor.
                bool topLevelOriginal = JsonFields.OptionalInt(root, "original_max_position_embeddings", file) is not null;
                int original = OriginalMax(root, dict, maxPositionEmbeddings, file);
                return p with
                {
                    RopeType = RopeType.LongRope,
                    Factor = topLevelOriginal ? (double)maxPositionEmbeddings / original : OptionalFactor(dict, file) ?? 1.0,
                    OriginalMaxPositionEmbeddings = original,
                    AttentionFactor = JsonFields.OptionalDouble(dict, "attention_factor", file),
                    ShortFactor = Factors(dict, "short_factor", file),
                    LongFactor = Factors(dict, "long_factor", file),
                };
            }
            default:
                throw new ModelConfigException(
                    $"{file}: rope_type '{typeName}' is not supported (supported: {string.Join(", ", SupportedTypes)})");
        }
    }

    private static double[] Factors(JsonElement dict, string name, string file)
    {
        if (!JsonFields.TryGet(dict, name, out JsonElement list) || list.ValueKind != JsonValueKind.Array
            || list.EnumerateArray().Any(e => e.ValueKind != JsonValueKind.Number || !(e.GetDouble() > 0)))
        {
            throw new ModelConfigException($"{file}: LongRoPE field '{name}' must be a list of positive numbers");
        }

        return [.. list.EnumerateArray().Select(e => e.GetDouble())];
    }

    private static double RequiredFactor(JsonElement dict, string file) =>
        OptionalFactor(dict, file) ?? throw new ModelConfigException($"{file}: RoPE field 'factor' is missing");

    private static double? OptionalFactor(JsonElement dict, string file)
    {
        double? factor = JsonFields.OptionalDouble(dict, "factor", file);
        if (factor is <= 0)
        {
            throw new ModelConfigException($"{file}: RoPE field 'factor' must be positive, got {factor}");
        }
        return factor;
    }

    private static int OriginalMax(JsonElement root, JsonElement dict, int maxPositionEmbeddings, string file)
    {
        int original = JsonFields.OptionalInt(root, "original_max_position_embeddings", file)
            ?? JsonFields.OptionalInt(dict, "original_max_position_embeddings", file)
            ?? maxPositionEmbeddings;
        if (original <= 0)
        {
            throw new ModelConfigException($"{file}: field 'original_max_position_embeddings' must be positive, got {original}");
        }
        return original;
    }

    private static double NonZeroOr(double? value, double fallback) => value is null or 0 ? fallback : value.Value;

    private static bool IsEmptyObject(JsonElement e) =>
        e.ValueKind == JsonValueKind.Object && !e.EnumerateObject().Any();

    private static JsonElement RequireObject(JsonElement e, string name, string file) =>
        e.ValueKind == JsonValueKind.Object ? e : throw new ModelConfigException($"{file}: field '{name}' must be an object");

    /// <summary>
    /// transformers 5 lets hybrid models (Gemma 3, ...) nest one dict per layer type
    /// (<c>{"full_attention": {...}, "sliding_attention": {...}}</c>). None of the supported
    /// architectures do; say so rather than silently reading defaults.
    /// </summary>
    private static void RejectPerLayerParameters(JsonElement dict, string file)
    {
        foreach (var property in dict.EnumerateObject())
        {
            if (property.Value.ValueKind == JsonValueKind.Object)
            {
                throw new ModelConfigException(
                    $"{file}: per-layer-type 'rope_parameters' (key '{property.Name}') are not supported");
            }
        }
    }
}
