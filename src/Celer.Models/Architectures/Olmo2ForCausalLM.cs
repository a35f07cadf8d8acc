namespace Celer.Models.Architectures;

/// <summary>AI2's OLMo 2: Llama with norms after attention and the MLP instead of before, and q/k norms over the whole projections.</summary>
public static class Olmo2ForCausalLM
{
    public static readonly ArchitectureSpec Spec = new() { Name = "Olmo2ForCausalLM", PostNorms = true };
}
