using Celer.Models.Config;

namespace Celer.Models.Architectures;

/// <summary>Maps a checkpoint's <c>architectures</c> entry to the spec that runs it.</summary>
public static class ModelRegistry
{
    private static readonly Dictionary<string, ArchitectureSpec> Specs = new[]
    {
        LlamaForCausalLM.Spec,
        MistralForCausalLM.Spec,
        Qwen2ForCausalLM.Spec,
        Qwen3ForCausalLM.Spec,
        GraniteForCausalLM.Spec,
        SmolLM3ForCausalLM.Spec,
        Phi3ForCausalLM.Spec,
        Olmo2ForCausalLM.Spec,
        Gemma2ForCausalLM.Spec,
        Gemma3ForCausalLM.Spec,
        MixtralForCausalLM.Spec,
        Qwen2MoeForCausalLM.Spec,
        Qwen3MoeForCausalLM.Spec,
        GptOssForCausalLM.Spec,
    }.ToDictionary(s => s.Name, StringComparer.Ordinal);

    /// <summary>The decoder layouts: <see cref="DecoderModel"/> runs them.</summary>
    public static IReadOnlyCollection<string> SupportedArchitectures => Specs.Keys;

    /// <summary>Whether <see cref="EncoderModel"/> runs <paramref name="config"/>, else the decoder's spec (or a clear refusal).</summary>
    public static bool IsEncoder(ModelConfig config)
    {
        if (config.Encoder is not null)
        {
            return true;
        }

        Resolve(config);
        return false;
    }

    public static ArchitectureSpec Resolve(ModelConfig config)
    {
        if (Specs.TryGetValue(config.Architecture, out ArchitectureSpec? spec))
        {
            return spec;
        }

        throw new ModelConfigException(
            $"Model architecture '{config.Architecture}' is not supported. Supported: {string.Join(", ", Specs.Keys.Concat(EncoderConfig.Architectures).Order(StringComparer.Ordinal))}; " +
            "as pooling models also each decoder's …Model and …ForSequenceClassification. " +
            "A checkpoint whose config and weights are those of a supported family under another name can run as it with " +
            "--hf-overrides '{\"architectures\": [\"<supported name>\"]}'.");
    }
}
