using Celer.Models.Config;

namespace Celer.Server.Serving;

/// <summary>
/// Default sampling values a request falls back to when it leaves a field unset: the model's
/// generation_config.json under vLLM's <c>--generation-config auto</c>, nothing under <c>vllm</c>
/// (vLLM's own defaults then apply). vLLM reads exactly these keys
/// (<c>ModelConfig.get_diff_sampling_param</c>).
/// </summary>
public sealed record GenerationDefaults(
    float? Temperature = null,
    float? TopP = null,
    int? TopK = null,
    float? MinP = null,
    float? RepetitionPenalty = null,
    int? MaxNewTokens = null)
{
    public static GenerationDefaults None { get; } = new();

    public static GenerationDefaults From(GenerationConfig config) => new(
        (float?)config.Temperature, (float?)config.TopP, config.TopK, (float?)config.MinP, (float?)config.RepetitionPenalty, config.MaxNewTokens);
}
