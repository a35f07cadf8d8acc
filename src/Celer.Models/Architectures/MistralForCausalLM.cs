namespace Celer.Models.Architectures;

/// <summary>Mistral: Llama's shape with optional sliding-window attention (<c>sliding_window</c>, null = full).</summary>
public static class MistralForCausalLM
{
    public static readonly ArchitectureSpec Spec = new() { Name = "MistralForCausalLM" };
}
