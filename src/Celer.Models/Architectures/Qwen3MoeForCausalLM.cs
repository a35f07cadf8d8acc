namespace Celer.Models.Architectures;

/// <summary>Qwen3's MoE models (Qwen3-30B-A3B, Qwen3-235B-A22B): Qwen3's attention (q/k norms) and MoE MLPs without a shared expert.</summary>
public static class Qwen3MoeForCausalLM
{
    public static readonly ArchitectureSpec Spec = new()
    {
        Name = "Qwen3MoeForCausalLM",
        QkNorm = true,
        MoeWeights = new MoeWeightNames("mlp", Gate: "gate_proj", Up: "up_proj", Down: "down_proj"),
    };
}
