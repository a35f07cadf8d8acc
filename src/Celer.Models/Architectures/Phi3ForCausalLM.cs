namespace Celer.Models.Architectures;

/// <summary>
/// Phi-3, Phi-3.5 and Phi-4-mini: Llama with q/k/v and gate/up fused in the checkpoint, partial rotary
/// (<c>partial_rotary_factor</c>) and LongRoPE (<c>rope_scaling.type</c> longrope or su), which RoPE reads from config.json.
/// </summary>
public static class Phi3ForCausalLM
{
    public static readonly ArchitectureSpec Spec = new() { Name = "Phi3ForCausalLM", FusedProjections = true };
}
