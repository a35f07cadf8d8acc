namespace Celer.Models.Architectures;

/// <summary>Mistral AI's Mixtral: Mistral's attention, and a sparse MoE MLP (top-2 of 8 SwiGLU experts, renormalized) in every layer.</summary>
public static class MixtralForCausalLM
{
    public static readonly ArchitectureSpec Spec = new()
    {
        Name = "MixtralForCausalLM",
        MoeWeights = new MoeWeightNames("block_sparse_moe", Gate: "w1", Up: "w3", Down: "w2"),
    };
}
