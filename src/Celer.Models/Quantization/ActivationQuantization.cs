namespace Celer.Models.Quantization;

/// <summary>How a W8A8 layer's input is scaled into FP8 E4M3 before its matmul (vLLM's schemes).</summary>
public enum ActivationScaling
{
    /// <summary>Each row by its own absmax / 448, at least 1 / (448 · 512) (vLLM's dynamic_per_token_scaled_fp8_quant).</summary>
    DynamicPerToken,

    /// <summary>Every row by the checkpoint's calibrated <c>input_scale</c>.</summary>
    StaticPerTensor,

    /// <summary>Each row's groups of columns by their own max(absmax, 1e-10) / 448 (vLLM's per_token_group_quant_fp8).</summary>
    DynamicPerTokenGroup,
}

/// <summary>
/// The input quantization of one linear layer: its <see cref="Scaling"/>, the calibrated scale of
/// <see cref="ActivationScaling.StaticPerTensor"/> and the group of <see cref="ActivationScaling.DynamicPerTokenGroup"/>.
/// </summary>
public sealed record ActivationQuantization(ActivationScaling Scaling, float StaticScale = 0, int GroupSize = 0)
{
    /// <summary>E4M3's largest finite value.</summary>
    public const float Fp8Max = 448f;

    /// <summary>vLLM's floor on a dynamic per-token scale, so an all-zero row does not divide by zero.</summary>
    public const float MinTokenScale = (float)(1.0 / (448 * 512));

    /// <summary>vLLM's floor on a group's absmax.</summary>
    public const float MinGroupAbsMax = 1e-10f;
}
