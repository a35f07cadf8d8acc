namespace Celer.Models.Architectures;

/// <summary>
/// IBM Granite 3.x: Llama with four scalings from config.json (embedding, residual, attention and logits multipliers).
/// </summary>
public static class GraniteForCausalLM
{
    public static readonly ArchitectureSpec Spec = new() { Name = "GraniteForCausalLM", Multipliers = true };
}
