using Celer.Models.Backend;
using Celer.Models.Config;
using Celer.Models.Quantization;
using Celer.Models.Weights;

namespace Celer.Models.Architectures;

/// <summary>
/// One decoder layer: the attention sublayer (<see cref="SelfAttention"/>) and the MLP (gated, or a sparse mixture of
/// experts), with the norms where the architecture puts them (before each sublayer; after, OLMo-2; both, Gemma).
/// </summary>
internal sealed class DecoderLayer
{
    private readonly SelfAttention _attention;
    private readonly IFeedForward _mlp;
    private readonly Tensor _postAttentionNorm;
    private readonly Tensor? _postFeedforwardNorm;   // OLMo-2's and Gemma's norm of the MLP output
    private readonly Tensor? _preFeedforwardNorm;    // Gemma's norm of the MLP input

    /// <param name="c">The whole model's config; <paramref name="shard"/> says what of each layer this rank holds.</param>
    public DecoderLayer(int index, ModelConfig c, ArchitectureSpec spec, IWeightSource w, IModelBackend b, TensorParallelShard shard)
    {
        string p = $"model.layers.{index}.";
        int hidden = c.HiddenSize;

        Tensor Load(string name, params int[] shape) => b.LoadWeight(w.Get(p + name, shape));
        Tensor? LoadIf(bool present, string name, params int[] shape) => present ? Load(name, shape) : null;

        // A post-norm layer (OLMo-2) has no input norm; the model feeds it the residual stream itself.
        InputNorm = spec.PostNorms ? null : Load("input_layernorm.weight", hidden);
        _attention = new SelfAttention(index, p + "self_attn.", c, spec, w, b, shard);
        _postAttentionNorm = Load("post_attention_layernorm.weight", hidden);
        _preFeedforwardNorm = LoadIf(spec.GemmaLayers, "pre_feedforward_layernorm.weight", hidden);
        _postFeedforwardNorm = LoadIf(spec.PostNorms || spec.GemmaLayers, "post_feedforward_layernorm.weight", hidden);
        _mlp = spec.MoeWeights is { } moe && c.Moe is { } moeConfig && moeConfig.SparseLayers[index]
            ? new SparseMoeBlock(p + moe.Block + ".", c, moe, w, b, shard)
            : new GatedMlp(p + "mlp.", hidden, c.IntermediateSize, c.MlpBias, spec.FusedProjections, geluTanh: spec.GemmaLayers, w, b, shard);
    }

    /// <summary>The norm before attention, which the previous layer's fused add-and-norm applies; null in a post-norm layer.</summary>
    public Tensor? InputNorm { get; }

    /// <summary>How q/k/v quantize their input in a W8A8 layer, for the norm before them to do ahead (<see cref="IModelBackend.AddRmsNorm"/>).</summary>
    public ActivationQuantization? AttentionInput => _attention.InputQuantization;

    /// <summary>
    /// Input: <c>a.Hidden</c> = input_layernorm(residual). Output: <c>a.Hidden</c> = this layer's MLP output, to be
    /// scaled and added to the residual by the caller's fused add-and-norm (with the next layer's input norm).
    /// </summary>
    /// <param name="residualMultiplier">Granite's scaling of the attention output before its residual add (1: none).</param>
    public void Forward(IModelBackend b, Activations a, int rows, RopeSpec rope, AttentionSpec attn, float eps, float residualMultiplier)
    {
        _attention.Forward(b, a, rows, a.Hidden, rope, attn, eps, a.Hidden);

        if (residualMultiplier != 1f)
        {
            b.Scale(a.Hidden, rows, residualMultiplier);
        }

        b.AddRmsNorm(a.Hidden, a.Residual, rows, _postAttentionNorm, eps, _mlp.InputQuantization);
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
        _attention.Forward(b, a, rows, a.Hidden, rope, attn, eps, a.Hidden);
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
        _attention.Forward(b, a, rows, a.Residual, rope, attn, eps, a.Hidden);
        b.RmsNormSlice(a.Hidden, rows, 0, _postAttentionNorm, eps);
        b.Add(a.Hidden, rows, a.Residual);

        _mlp.Forward(b, a, rows, a.Residual, a.Hidden);
        b.RmsNormSlice(a.Hidden, rows, 0, _postFeedforwardNorm!, eps);
        b.Add(a.Hidden, rows, a.Residual);
    }
}
