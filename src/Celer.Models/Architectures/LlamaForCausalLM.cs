namespace Celer.Models.Architectures;

/// <summary>Llama 2/3/3.1/3.2: the family's reference shape (<c>attention_bias</c> adds biases to q/k/v and o).</summary>
public static class LlamaForCausalLM
{
    public static readonly ArchitectureSpec Spec = new() { Name = "LlamaForCausalLM" };
}
