using Celer.Models.Backend;
using Celer.Models.Config;
using Celer.Models.Quantization;
using Celer.Models.Weights;

namespace Celer.Models.Architectures;

/// <summary>
/// The attention sublayer (the checkpoints' <c>self_attn.</c>): q/k/v stacked at load into one weight (as vLLM's
/// QKVParallelLinear: one GEMM reading the input once) or read fused (Phi-3's <c>qkv_proj</c>), optional q/k norms,
/// RoPE and the KV-cache write in one backend call, paged attention (with gpt-oss's sinks), and o_proj.
/// </summary>
internal sealed class SelfAttention
{
    private readonly int _layer, _qDim;
    private readonly Tensor _qkvProj, _oProj;
    private readonly Tensor? _qkvBias, _oBias, _qNorm, _kNorm, _sinks;
    private readonly ActivationQuantization? _qkvInput, _oInput;   // FP8 W8A8 checkpoints: how each matmul's input is quantized
    private readonly ICollectives? _group;   // tensor parallelism: o_proj's partial sums are all-reduced

    // OLMo-2 normalizes q and k over the whole projection (heads × head_dim) before RoPE, a norm of its own; the
    // others (Qwen3, Gemma 3) per head inside the backend's prepare step.
    private readonly bool _projectionNorms;

    /// <param name="prefix">The sublayer's weight prefix, <c>model.layers.N.self_attn.</c>.</param>
    /// <param name="c">The whole model's config (the checkpoint's shapes); <paramref name="shard"/> says which heads this rank holds.</param>
    /// <param name="inputWidth">
    /// What q/k/v read, when not <c>hidden_size</c>: an EAGLE-3 head's projections take its [embedding, hidden state] pair.
    /// </param>
    public SelfAttention(int layer, string prefix, ModelConfig c, ArchitectureSpec spec, IWeightSource w, IModelBackend b, TensorParallelShard shard, int? inputWidth = null)
    {
        int hidden = c.HiddenSize, input = inputWidth ?? hidden, hd = c.HeadDim, qDim = c.NumAttentionHeads * hd, kvDim = c.NumKeyValueHeads * hd;
        WeightTensor Get(string name, params int[] shape) => w.Get(prefix + name, shape);
        Tensor Load(string name, params int[] shape) => b.LoadWeight(Get(name, shape));

        // This rank's query rows and key/value rows of a q/k/v weight or bias (all of them without tensor parallelism).
        bool whole = shard.Size == 1;
        WeightTensor Queries(WeightTensor t, int at = 0) => whole ? t : TensorParallelShard.Rows(t, at + (shard.HeadStart * hd), shard.Heads * hd);
        WeightTensor KeysOrValues(WeightTensor t, int at = 0) => whole ? t : TensorParallelShard.Rows(t, at + (shard.KvHeadStart * hd), shard.KvHeads * hd);

        _layer = layer;
        _qDim = qDim;
        _group = shard.Group;
        _projectionNorms = spec.PostNorms;
        if (spec.FusedProjections)
        {
            WeightTensor qkv = Get("qkv_proj.weight", qDim + 2 * kvDim, input);
            _qkvProj = whole ? b.LoadWeight(qkv) : b.LoadStacked(qkv.Name, Queries(qkv), KeysOrValues(qkv, qDim), KeysOrValues(qkv, qDim + kvDim));
        }
        else
        {
            _qkvProj = b.LoadStacked(prefix + "qkv_proj.weight",
                Queries(Get("q_proj.weight", qDim, input)), KeysOrValues(Get("k_proj.weight", kvDim, input)), KeysOrValues(Get("v_proj.weight", kvDim, input)));
        }

        _qkvBias = c.HasQkvBias
            ? b.LoadStacked(prefix + "qkv_proj.bias", Queries(Get("q_proj.bias", qDim)), KeysOrValues(Get("k_proj.bias", kvDim)), KeysOrValues(Get("v_proj.bias", kvDim)))
            : null;
        _oProj = whole ? Load("o_proj.weight", hidden, qDim) : TensorParallelShard.LoadColumns(b, Get("o_proj.weight", hidden, qDim), shard.HeadStart * hd, shard.Heads * hd);
        _qkvInput = spec.FusedProjections ? w.InputQuantization(prefix + "qkv_proj") : w.InputQuantization(prefix + "q_proj", prefix + "k_proj", prefix + "v_proj");
        _oInput = w.InputQuantization(prefix + "o_proj");
        _oBias = c.HasOutputProjectionBias && shard.AddsRowParallelBias ? Load("o_proj.bias", hidden) : null;
        WeightTensor? sinks = spec.AttentionSinks ? Get("sinks", c.NumAttentionHeads) : null;   // one logit per query head
        _sinks = sinks is not { } perHead ? null : b.LoadWeight(whole ? perHead : TensorParallelShard.Rows(perHead, shard.HeadStart, shard.Heads));
        if (_projectionNorms)
        {
            _qNorm = Load("q_norm.weight", qDim);
            _kNorm = Load("k_norm.weight", kvDim);
        }
        else if (spec.QkNorm)
        {
            _qNorm = Load("q_norm.weight", c.HeadDim);
            _kNorm = Load("k_norm.weight", c.HeadDim);
        }
    }

    /// <summary>How q/k/v's FP8 layer quantizes the input; null when it is not W8A8.</summary>
    public ActivationQuantization? InputQuantization => _qkvInput;

    /// <summary><paramref name="output"/> = o_proj(attention(<paramref name="input"/>)); the two may be one buffer.</summary>
    public void Forward(IModelBackend b, Activations a, int rows, Tensor input, RopeSpec rope, AttentionSpec attn, float eps, Tensor output)
    {
        b.Linear(input, rows, _qkvProj, _qkvBias, a.Qkv, _qkvInput);
        if (_projectionNorms)
        {
            b.RmsNormSlice(a.Qkv, rows, 0, _qNorm!, eps);
            b.RmsNormSlice(a.Qkv, rows, _qDim, _kNorm!, eps);
            b.PrepareAttention(_layer, a.Qkv, rows, attn, rope, null, null, eps, a.Q);
        }
        else
        {
            b.PrepareAttention(_layer, a.Qkv, rows, attn, rope, _qNorm, _kNorm, eps, a.Q);
        }

        b.Attention(_layer, a.Q, a.AttentionOutput, attn, _sinks);
        b.Linear(a.AttentionOutput, rows, _oProj, _oBias, output, _oInput);
        _group?.AllReduce(output, rows);
    }
}
