namespace Celer.Models.Architectures;

/// <summary>
/// Gemma 2: Gemma norms around attention and the MLP, √hidden-scaled embeddings, a GeGLU MLP, the attention scale from
/// <c>query_pre_attn_scalar</c>, attention and final logit soft-capping, and sliding-window and global layers alternating
/// (<c>layer_types</c>, or layers 0, 2, 4, … sliding).
/// </summary>
public static class Gemma2ForCausalLM
{
    public static readonly ArchitectureSpec Spec = new() { Name = "Gemma2ForCausalLM", GemmaLayers = true };
}
