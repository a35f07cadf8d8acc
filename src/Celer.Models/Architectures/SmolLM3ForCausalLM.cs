namespace Celer.Models.Architectures;

/// <summary>SmolLM3: Llama with RoPE left out of the layers <c>no_rope_layers</c> flags 0 (every fourth, in the release).</summary>
public static class SmolLM3ForCausalLM
{
    public static readonly ArchitectureSpec Spec = new() { Name = "SmolLM3ForCausalLM", NoRopeLayers = true };
}
