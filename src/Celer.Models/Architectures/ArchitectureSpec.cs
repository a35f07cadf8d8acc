using Celer.Models.Config;
using Celer.Models.Rope;

namespace Celer.Models.Architectures;

/// <summary>
/// What one member of the Llama family adds to the shared forward pass (<see cref="DecoderModel"/>). Biases and
/// sliding windows are read from config.json by <see cref="Config.ModelConfig"/>; what remains is declared here.
/// </summary>
public sealed record ArchitectureSpec
{
    /// <summary>The HF <c>architectures</c> entry this spec serves.</summary>
    public required string Name { get; init; }

    /// <summary>Per-head RMSNorm of queries and keys before RoPE (Qwen3).</summary>
    public bool QkNorm { get; init; }

    /// <summary>
    /// Granite's scalings: embeddings × <c>embedding_multiplier</c>, each sublayer's output × <c>residual_multiplier</c>
    /// before its residual add, attention scale <c>attention_multiplier</c>, logits ÷ <c>logits_scaling</c>.
    /// </summary>
    public bool Multipliers { get; init; }

    /// <summary>SmolLM3's <c>no_rope_layers</c>: layers flagged 0 leave queries and keys unrotated.</summary>
    public bool NoRopeLayers { get; init; }

    /// <summary>
    /// OLMo-2's layer: no norm before attention or the MLP; RMSNorm of the attention output
    /// (<c>post_attention_layernorm</c>) and of the MLP output (<c>post_feedforward_layernorm</c>) before each residual
    /// add; q and k normalized over the whole projection (<c>q_norm</c>/<c>k_norm</c> of heads × head_dim); every norm
    /// OLMo-2's (the weight applied before rounding).
    /// </summary>
    public bool PostNorms { get; init; }

    /// <summary>
    /// Gemma 2 and 3's layer: Gemma RMSNorms (weight 1 + w, one rounding) before and after attention and before and
    /// after the MLP, each sublayer's output normalized before its residual add; embeddings × √hidden_size rounded to
    /// the model dtype; a GeGLU MLP (gelu tanh); the attention scale <c>query_pre_attn_scalar</c>^−½; the final norm
    /// Gemma's. Soft-capping of scores and logits comes from config.json (<see cref="ModelConfig.AttnLogitSoftcapping"/>,
    /// <see cref="ModelConfig.FinalLogitSoftcapping"/>).
    /// </summary>
    public bool GemmaLayers { get; init; }

    /// <summary>
    /// Gemma 3: sliding-window layers rotate with their own RoPE (<see cref="ModelConfig.LocalRope"/>:
    /// <c>rope_local_base_freq</c>, no scaling), full-attention layers with the model's.
    /// </summary>
    public bool LocalRopeOnSlidingLayers { get; init; }

    /// <summary>What layer <paramref name="index"/> of a model of this architecture is, from its config.</summary>
    public LayerSpec Layer(ModelConfig config, int index)
    {
        bool sliding = config.SlidingWindow is not null && (config.SlidingLayers is not { } layers || layers[index]);
        return new(
            Rope: !NoRopeLayers || config.RopeLayers is not { } rope || rope[index],
            SlidingWindow: sliding ? config.SlidingWindow!.Value : 0,
            RopeParameters: LocalRopeOnSlidingLayers && config.LocalRope is { } local && IsSlidingLayer(config, index) ? local : config.Rope);
    }

    /// <summary>Whether the config marks layer <paramref name="index"/> as a sliding-window layer (whether or not a window is set).</summary>
    private static bool IsSlidingLayer(ModelConfig config, int index) => config.SlidingLayers is { } layers && layers[index];

    /// <summary>
    /// Phi-3's checkpoints store q/k/v as one <c>self_attn.qkv_proj</c> and gate/up as one <c>mlp.gate_up_proj</c>, in
    /// the order Celer stacks them itself: loaded as they are.
    /// </summary>
    public bool FusedProjections { get; init; }

    /// <summary>
    /// gpt-oss's learned attention sinks: each layer's <c>self_attn.sinks</c> ([heads]) is one more logit in every head's
    /// softmax, with no value (<see cref="Backend.IModelBackend.Attention"/>).
    /// </summary>
    public bool AttentionSinks { get; init; }

    /// <summary>
    /// Where a mixture-of-experts model keeps its MoE layers' weights (null: a dense model); the expert counts come
    /// from config.json (<see cref="ModelConfig.Moe"/>).
    /// </summary>
    public MoeWeightNames? MoeWeights { get; init; }
}

/// <summary>
/// The names of a MoE layer's weights under <c>model.layers.N.</c>: the block (<c>block_sparse_moe</c>, <c>mlp</c>) with its
/// router (<see cref="Router"/>), and each expert's gate, up and down projections (Mixtral's <c>w1</c>, <c>w3</c>, <c>w2</c>).
/// </summary>
public sealed record MoeWeightNames(string Block, string Gate, string Up, string Down)
{
    /// <summary>The router's module under the block: <c>gate</c>, or gpt-oss's <c>router</c>.</summary>
    public string Router { get; init; } = "gate";

    /// <summary>gpt-oss: the router has a bias.</summary>
    public bool RouterBias { get; init; }

    /// <summary>
    /// gpt-oss's experts (<see cref="GptOssExperts"/>): fused tensors stored input-major with gate and up columns
    /// interleaved, a bias per projection, and the clamped SwiGLU.
    /// </summary>
    public bool GptOssExperts { get; init; }
}

/// <summary>
/// The per-layer choices of a model (per-layer specs instead of per-model switches): whether the layer applies RoPE,
/// its attention window in tokens (0: full attention), and the RoPE settings it rotates with (the model's, or Gemma 3's
/// local ones on its sliding layers).
/// </summary>
public readonly record struct LayerSpec(bool Rope, int SlidingWindow, RopeParameters RopeParameters);
