namespace Celer.Models.Architectures;

/// <summary>
/// Qwen1.5-MoE and Qwen2-MoE: Qwen2's attention (q/k/v bias), and MoE MLPs of many small experts plus a shared expert
/// scaled by a sigmoid gate; <c>mlp_only_layers</c> and <c>decoder_sparse_step</c> leave some layers dense.
/// </summary>
public static class Qwen2MoeForCausalLM
{
    public static readonly ArchitectureSpec Spec = new()
    {
        Name = "Qwen2MoeForCausalLM",
        MoeWeights = new MoeWeightNames("mlp", Gate: "gate_proj", Up: "up_proj", Down: "down_proj"),
    };
}
