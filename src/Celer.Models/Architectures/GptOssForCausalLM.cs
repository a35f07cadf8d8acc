namespace Celer.Models.Architectures;

/// <summary>
/// OpenAI's gpt-oss: Llama-style pre-norm layers whose attention has biases on all four projections, a learned sink
/// per head, and sliding-window (128 tokens) and full layers alternating, with YaRN RoPE; every MLP is a MoE of
/// biased experts with a clamped SwiGLU, routed by a biased router whose top-k logits are softmaxed.
/// </summary>
public static class GptOssForCausalLM
{
    public static readonly ArchitectureSpec Spec = new()
    {
        Name = "GptOssForCausalLM",
        AttentionSinks = true,
        MoeWeights = new MoeWeightNames("mlp", Gate: "gate_up_proj", Up: "gate_up_proj", Down: "down_proj")
        {
            Router = "router",
            RouterBias = true,
            GptOssExperts = true,
        },
    };
}
