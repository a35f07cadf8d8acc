namespace Celer.Models.Architectures;

/// <summary>Qwen2 / Qwen2.5: q/k/v always carry a bias, o_proj never.</summary>
public static class Qwen2ForCausalLM
{
    public static readonly ArchitectureSpec Spec = new() { Name = "Qwen2ForCausalLM" };
}
