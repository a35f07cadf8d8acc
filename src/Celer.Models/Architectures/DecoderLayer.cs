using Celer.Models.Backend;
using Celer.Models.Config;
using Celer.Models.Weights;

namespace Celer.Models.Architectures;

/// <summary>
/// One decoder layer: attention (q/k/v, optional q/k norm, RoPE, paged attention, o) and the MLP (gated, or a sparse
/// mixture of experts), with its norms where the architecture puts them (before each sublayer; after, OLMo-2; both, Gemma).
/// </summary>
internal sealed class DecoderLayer
{
    private readonly int _index;

    // q/k/v are stacked at load into one weight (as vLLM's QKVParallelLinear): one GEMM instead of three, reading the
    // shared input once.
    private readonly Tensor _qkvProj, _oProj;
    private readonly Tensor? _qkvBias, _oBias;
    private readonly IFeedForward _mlp;
    private readonly Tensor? _qNorm, _kNorm;
    private readonly Tensor _postAttentionNorm;
    private readonly Tensor? _postFeedforwardNorm;   // OLMo-2's and Gemma's norm of the MLP output
    private readonly Tensor? _preFeedforwardNorm;    // Gemma's norm of the MLP input
    private readonly int _qDim, _kvDim;

    public DecoderLayer(int index, ModelConfig c, ArchitectureSpec spec, IWeightSource w, IModelBackend b)
    {
        _index = index;
        string p = $"model.layers.{index}.";
        int hidden = c.HiddenSize, qDim = c.NumAttentionHeads * c.HeadDim, kvDim = c.NumKeyValueHeads * c.HeadDim;

        WeightTensor Get(string name, params int[] shape) => w.Get(p + name, shape);
        Tensor Load(string name, params int[] shape) => b.LoadWeight(Get(name, shape));
        Tensor? LoadIf(bool present, string name, params int[] shape) => present ? Load(name, shape) : null;

        _qDim = qDim;
        _kvDim = kvDim;
        // A post-norm layer (OLMo-2) has no input norm; the model feeds it the residual stream itself.
        InputNorm = spec.PostNorms ? null : Load("input_layernorm.weight", hidden);
        _qkvProj = spec.FusedProjections
            ? Load("self_attn.qkv_proj.weight", qDim + 2 * kvDim, hidden)
            : b.LoadStacked(
                p + "self_attn.qkv_proj.weight",
                Get("self_attn.q_proj.weight", qDim, hidden), Get("self_attn.k_proj.weight", kvDim, hidden), Get("self_attn.v_proj.weight", kvDim, hidden));
        _qkvBias = c.HasQkvBias
            ? b.LoadStacked(p + "self_attn.qkv_proj.bias", Get("self_attn.q_proj.bias", qDim), Get("self_attn.k_proj.bias", kvDim), Get("self_attn.v_proj.bias", kvDim))
            : null;
        _oProj = Load("self_attn.o_proj.weight", hidden, qDim);
        _oBias = LoadIf(c.HasOutputProjectionBias, "self_attn.o_proj.bias", hidden);
        _qNorm = spec.PostNorms ? Load("self_attn.q_norm.weight", qDim) : LoadIf(spec.QkNorm, "self_attn.q_norm.weight", c.HeadDim);
        _kNorm = spec.PostNorms ? Load("self_attn.k_norm.weight", kvDim) : LoadIf(spec.QkNorm, "self_attn.k_norm.weight", c.HeadDim);
        _postAttentionNorm = Load("post_attention_layernorm.weight", hidden);
        _preFeedforwardNorm = LoadIf(spec.GemmaLayers, "pre_feedforward_layernorm.weight", hidden);
        _postFeedforwardNorm = LoadIf(spec.PostNorms || spec.GemmaLayers, "post_feedforward_layernorm.weight", hidden);
        _mlp = spec.MoeWeights is { } moe && c.Moe is { } moeConfig && moeConfig.SparseLayers[index]
            ? new SparseMoeBlock(p + moe.Block + ".", c, moe, w, b)
            : new GatedMlp(p + "mlp.", hidden, c.IntermediateSize, c.MlpBias, spec.FusedProjections, geluTanh: spec.GemmaLayers, w, b);
    }

    /// <summary>The norm before attention, which the previous layer's fused add-and-norm applies; null in a post-norm layer.</summary>
    public Tensor? InputNorm { get; }

    /// <summary>
    /// Input: <c>a.Hidden</c> = input_layernorm(residual). Output: <c>a.Hidden</c> = this layer's MLP output, to be
    /// scaled and added to the residual by the caller's fused add-and-norm (with the next layer's input norm).
    /// </summary>
    /// <param name="residualMultiplier">Granite's scaling of the attention output before its residual add (1: none).</param>
    public void Forward(IModelBackend b, Activations a, int rows, RopeSpec rope, AttentionSpec attn, float eps, float residualMultiplier)
    {
        b.Linear(a.Hidden, rows, _qkvProj, _qkvBias, a.Qkv);
        b.PrepareAttention(_index, a.Qkv, rows, attn, rope, _qNorm, _kNorm, eps, a.Q);
        b.Attention(_index, a.Q, a.AttentionOutput, attn);
        b.Linear(a.AttentionOutput, rows, _oProj, _oBias, a.Hidden);

        if (residualMultiplier != 1f)
        {
            b.Scale(a.Hidden, rows, residualMultiplier);
        }

        b.AddRmsNorm(a.Hidden, a.Residual, rows, _postAttentionNorm, eps);
        _mlp.Forward(b, a, rows, a.Hidden, a.Hidden);
    }

    /// <summary>
    /// A Gemma 2/3 layer. Input: <c>a.Hidden</c> = input_layernorm(residual). Each sublayer's output is Gemma-normalized
    /// (post_attention_layernorm, post_feedforward_layernorm) and added to the residual, and the sum normalized for what
    /// comes next (pre_feedforward_layernorm, then <paramref name="nextNorm"/>: the next layer's input_layernorm or the
    /// final norm), one fused kernel each. Output: <c>a.Hidden</c> = nextNorm(residual).
    /// </summary>
    public void ForwardGemma(IModelBackend b, Activations a, int rows, RopeSpec rope, AttentionSpec attn, float eps, Tensor nextNorm)
    {
        b.Linear(a.Hidden, rows, _qkvProj, _qkvBias, a.Qkv);
        b.PrepareAttention(_index, a.Qkv, rows, attn, rope, _qNorm, _kNorm, eps, a.Q);
        b.Attention(_index, a.Q, a.AttentionOutput, attn);
        b.Linear(a.AttentionOutput, rows, _oProj, _oBias, a.Hidden);
        b.GemmaAddRmsNorm(a.Hidden, a.Residual, rows, _postAttentionNorm, _preFeedforwardNorm!, eps);

        _mlp.Forward(b, a, rows, a.Hidden, a.Hidden);
        b.GemmaAddRmsNorm(a.Hidden, a.Residual, rows, _postFeedforwardNorm!, nextNorm, eps);
    }

    /// <summary>
    /// A post-norm layer (OLMo-2) on the residual stream: attention of the residual, its output normalized and added
    /// back, then the MLP of the residual, its output normalized and added back; <c>a.Residual</c> holds the result.
    /// </summary>
    public void ForwardPostNorm(IModelBackend b, Activations a, int rows, RopeSpec rope, AttentionSpec attn, float eps)
    {
        b.Linear(a.Residual, rows, _qkvProj, _qkvBias, a.Qkv);
        b.RmsNormSlice(a.Qkv, rows, 0, _qNorm!, eps);
        b.RmsNormSlice(a.Qkv, rows, _qDim, _kNorm!, eps);
        b.PrepareAttention(_index, a.Qkv, rows, attn, rope, null, null, eps, a.Q);
        b.Attention(_index, a.Q, a.AttentionOutput, attn);
        b.Linear(a.AttentionOutput, rows, _oProj, _oBias, a.Hidden);
        b.RmsNormSlice(a.Hidden, rows, 0, _postAttentionNorm, eps);
        b.Add(a.Hidden, rows, a.Residual);

        _mlp.Forward(b, a, rows, a.Residual, a.Hidden);
        b.RmsNormSlice(a.Hidden, rows, 0, _postFeedforwardNorm!, eps);
        b.Add(a.Hidden, rows, a.Residual);
    }
}
