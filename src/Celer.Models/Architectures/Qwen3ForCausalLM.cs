namespace Celer.Models.Architectures;

/// <summary>Qwen3: per-head RMSNorm of q and k before RoPE; head_dim is explicit and often ≠ hidden / heads.</summary>
public static class Qwen3ForCausalLM
{
    public static readonly ArchitectureSpec Spec = new() { Name = "Qwen3ForCausalLM", QkNorm = true };
}
