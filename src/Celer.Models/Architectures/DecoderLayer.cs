using Celer.Models.Backend;
using Celer.Models.Config;
using Celer.Models.Weights;

namespace Celer.Models.Architectures;

/// <summary>One pre-norm decoder layer: attention (q/k/v, optional q/k norm, RoPE, paged attention, o) and the gated MLP.</summary>
internal sealed class DecoderLayer
{
    private readonly int _index;
    private readonly Tensor _qProj, _kProj, _vProj, _oProj;
    private readonly Tensor? _qBias, _kBias, _vBias, _oBias;
    private readonly Tensor? _qNorm, _kNorm;
    private readonly Tensor _postAttentionNorm;
    private readonly Tensor _gateProj, _upProj, _downProj;
    private readonly Tensor? _gateBias, _upBias, _downBias;

    public DecoderLayer(int index, ModelConfig c, ArchitectureSpec spec, IWeightSource w, IModelBackend b)
    {
        _index = index;
        string p = $"model.layers.{index}.";
        int hidden = c.HiddenSize, qDim = c.NumAttentionHeads * c.HeadDim, kvDim = c.NumKeyValueHeads * c.HeadDim;

        Tensor Load(string name, params int[] shape) => b.LoadWeight(w.Get(p + name, shape));
        Tensor? LoadIf(bool present, string name, params int[] shape) => present ? Load(name, shape) : null;

        InputNorm = Load("input_layernorm.weight", hidden);
        _qProj = Load("self_attn.q_proj.weight", qDim, hidden);
        _kProj = Load("self_attn.k_proj.weight", kvDim, hidden);
        _vProj = Load("self_attn.v_proj.weight", kvDim, hidden);
        _oProj = Load("self_attn.o_proj.weight", hidden, qDim);
        bool qkvBias = c.HasQkvBias;
        _qBias = LoadIf(qkvBias, "self_attn.q_proj.bias", qDim);
        _kBias = LoadIf(qkvBias, "self_attn.k_proj.bias", kvDim);
        _vBias = LoadIf(qkvBias, "self_attn.v_proj.bias", kvDim);
        _oBias = LoadIf(c.HasOutputProjectionBias, "self_attn.o_proj.bias", hidden);
        _qNorm = LoadIf(spec.QkNorm, "self_attn.q_norm.weight", c.HeadDim);
        _kNorm = LoadIf(spec.QkNorm, "self_attn.k_norm.weight", c.HeadDim);
        _postAttentionNorm = Load("post_attention_layernorm.weight", hidden);
        _gateProj = Load("mlp.gate_proj.weight", c.IntermediateSize, hidden);
        _upProj = Load("mlp.up_proj.weight", c.IntermediateSize, hidden);
        _downProj = Load("mlp.down_proj.weight", hidden, c.IntermediateSize);
        _gateBias = LoadIf(c.MlpBias, "mlp.gate_proj.bias", c.IntermediateSize);
        _upBias = LoadIf(c.MlpBias, "mlp.up_proj.bias", c.IntermediateSize);
        _downBias = LoadIf(c.MlpBias, "mlp.down_proj.bias", hidden);
    }

    public Tensor InputNorm { get; }

    /// <summary>
    /// Input: <c>a.Hidden</c> = input_layernorm(residual). Output: <c>a.Hidden</c> = this layer's MLP output, to be
    /// added to the residual by the caller's fused add-and-norm (with the next layer's input norm).
    /// </summary>
    public void Forward(IModelBackend b, Activations a, int rows, RopeSpec rope, AttentionSpec attn, float eps)
    {
        b.Linear(a.Hidden, rows, _qProj, _qBias, a.Q);
        b.Linear(a.Hidden, rows, _kProj, _kBias, a.K);
        b.Linear(a.Hidden, rows, _vProj, _vBias, a.V);
        if (_qNorm is not null && _kNorm is not null)
        {
            b.RmsNorm(a.Q, rows, _qNorm, eps, a.Q);
            b.RmsNorm(a.K, rows, _kNorm, eps, a.K);
        }

        b.Rope(a.Q, rows, attn.NumHeads, attn.HeadDim, rope);
        b.Rope(a.K, rows, attn.NumKvHeads, attn.HeadDim, rope);
        b.WriteKv(_index, a.K, a.V, rows);
        b.Attention(_index, a.Q, a.AttentionOutput, attn);
        b.Linear(a.AttentionOutput, rows, _oProj, _oBias, a.Hidden);

        b.AddRmsNorm(a.Hidden, a.Residual, rows, _postAttentionNorm, eps);
        b.Linear(a.Hidden, rows, _gateProj, _gateBias, a.Gate);
        b.Linear(a.Hidden, rows, _upProj, _upBias, a.Up);
        b.SiluMul(a.Gate, a.Up, rows, a.Gate);
        b.Linear(a.Gate, rows, _downProj, _downBias, a.Hidden);
    }
}
