namespace Celer.Models.Architectures;

/// <summary>
/// Gemma 3 (text; gemma-3-1b, or the language model of the larger ones published as text-only): Gemma 2's layer with
/// per-head Gemma norms of q and k before RoPE, a global layer every <c>sliding_window_pattern</c> layers (or per
/// <c>layer_types</c>), the sliding layers rotating with <c>rope_local_base_freq</c> and the global ones with
/// <c>rope_theta</c> and its scaling; no soft-capping unless config.json sets <c>final_logit_softcapping</c>.
/// </summary>
public static class Gemma3ForCausalLM
{
    public static readonly ArchitectureSpec Spec = new()
    {
        Name = "Gemma3ForCausalLM", GemmaLayers = true, QkNorm = true, LocalRopeOnSlidingLayers = true,
    };
}
