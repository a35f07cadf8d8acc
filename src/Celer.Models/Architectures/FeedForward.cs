using Celer.Models.Backend;
using Celer.Models.Config;
using Celer.Models.Quantization;
using Celer.Models.Weights;

namespace Celer.Models.Architectures;

/// <summary>The MLP half of a decoder layer: reads its input rows, writes its output rows (hidden size both).</summary>
internal interface IFeedForward
{
    void Forward(IModelBackend b, Activations a, int rows, Tensor input, Tensor output);

    /// <summary>How the first FP8 layer reading the input quantizes it; null when that layer is not W8A8.</summary>
    ActivationQuantization? InputQuantization { get; }
}

/// <summary>
/// The dense gated MLP: down(act(gate(x))·up(x)) with SiLU (SwiGLU) or gelu-tanh (Gemma's GeGLU), gate and up stacked at
/// load into one weight (as vLLM's MergedColumnParallelLinear): one GEMM reading x once.
/// </summary>
internal sealed class GatedMlp : IFeedForward
{
    private readonly Tensor _gateUp, _down;
    private readonly Tensor? _gateUpBias, _downBias;
    private readonly ActivationQuantization? _gateUpInput, _downInput;   // FP8 W8A8 checkpoints: how each matmul's input is quantized
    private readonly bool _geluTanh;
    private readonly ICollectives? _group;   // tensor parallelism: down_proj's partial sums are all-reduced
    private Tensor? _gateUpBuffer, _hiddenBuffer;

    /// <param name="prefix">The MLP's weight prefix (<c>model.layers.N.mlp.</c>, Qwen2-MoE's <c>….mlp.shared_expert.</c>).</param>
    /// <param name="intermediate">The checkpoint's intermediate size; <paramref name="shard"/> says which columns this rank holds.</param>
    /// <param name="fused">Phi-3's checkpoints store gate and up as one <c>gate_up_proj</c>.</param>
    public GatedMlp(string prefix, int hidden, int intermediate, bool bias, bool fused, bool geluTanh, IWeightSource w, IModelBackend b, TensorParallelShard shard)
    {
        WeightTensor Get(string name, params int[] shape) => w.Get(prefix + name, shape);
        bool whole = shard.Size == 1;
        // This rank's rows of the gate or the up half (all of them without tensor parallelism).
        WeightTensor Part(WeightTensor t, int at = 0) => whole ? t : TensorParallelShard.Rows(t, at + shard.IntermediateStart, shard.Intermediate);

        _geluTanh = geluTanh;
        _group = shard.Group;
        if (fused)
        {
            WeightTensor gateUp = Get("gate_up_proj.weight", 2 * intermediate, hidden);
            _gateUp = whole ? b.LoadWeight(gateUp) : b.LoadStacked(gateUp.Name, Part(gateUp), Part(gateUp, intermediate));
        }
        else
        {
            _gateUp = b.LoadStacked(prefix + "gate_up_proj.weight", Part(Get("gate_proj.weight", intermediate, hidden)), Part(Get("up_proj.weight", intermediate, hidden)));
        }

        _gateUpBias = bias ? b.LoadStacked(prefix + "gate_up_proj.bias", Part(Get("gate_proj.bias", intermediate)), Part(Get("up_proj.bias", intermediate))) : null;
        WeightTensor down = Get("down_proj.weight", hidden, intermediate);
        _down = whole ? b.LoadWeight(down) : TensorParallelShard.LoadColumns(b, down, shard.IntermediateStart, shard.Intermediate);
        _gateUpInput = fused ? w.InputQuantization(prefix + "gate_up_proj") : w.InputQuantization(prefix + "gate_proj", prefix + "up_proj");
        _downInput = w.InputQuantization(prefix + "down_proj");
        _downBias = bias && shard.AddsRowParallelBias ? b.LoadWeight(Get("down_proj.bias", hidden)) : null;
    }

    public ActivationQuantization? InputQuantization => _gateUpInput;

    public void Forward(IModelBackend b, Activations a, int rows, Tensor input, Tensor output)
    {
        // The buffers are sized for the widest MLP of the model (a dense layer, or Qwen2-MoE's shared expert): a
        // narrower one sees them as rows of its own width.
        _gateUpBuffer ??= View(a.GateUp, _gateUp.Rows);
        _hiddenBuffer ??= View(a.MlpHidden, _gateUp.Rows / 2);
        b.GatedLinear(input, rows, _gateUp, _gateUpBias, _gateUpInput, _geluTanh, _gateUpBuffer, _hiddenBuffer, _downInput);

        b.Linear(_hiddenBuffer, rows, _down, _downBias, output, _downInput);
        _group?.AllReduce(output, rows);
    }

    private static Tensor View(Tensor buffer, int columns) =>
        buffer.Columns == columns ? buffer : new Tensor(buffer.Name, buffer.Data, buffer.DType, [buffer.Rows, columns]);
}

/// <summary>
/// A sparse mixture-of-experts MLP (Mixtral's <c>block_sparse_moe</c>, Qwen-MoE's and gpt-oss's <c>mlp</c>): the router's
/// logits, then each token through its top-k SwiGLU experts (<see cref="IModelBackend.MoeExperts"/>); Qwen2-MoE adds a
/// shared expert scaled by sigmoid(shared_expert_gate(x)); gpt-oss's router and experts have biases and its experts a
/// clamped SwiGLU (<see cref="GptOssExperts"/>). The experts' gate/up and down projections are stacked at load into
/// one weight each, expert 0 first, so the backend's grouped kernels index an expert by offset. Checkpoints store them
/// per expert (<c>experts.N.w1</c> …), or fused as transformers 5 saves them (<c>experts.gate_up_proj</c> [experts,
/// 2·intermediate, hidden], <c>experts.down_proj</c> [experts, hidden, intermediate]).
/// </summary>
internal sealed class SparseMoeBlock : IFeedForward
{
    private readonly MoeConfig _moe;
    private readonly Tensor _router, _experts, _expertsDown;
    private readonly Tensor? _routerBias;
    private readonly ExpertOptions? _expertOptions;   // gpt-oss: expert biases and the clamped SwiGLU
    private readonly GatedMlp? _sharedExpert;
    private readonly Tensor? _sharedExpertGate;

    public SparseMoeBlock(string prefix, ModelConfig c, MoeWeightNames names, IWeightSource w, IModelBackend b, TensorParallelShard shard)
    {
        MoeConfig moe = c.Moe!;
        int hidden = c.HiddenSize, inter = moe.IntermediateSize, experts = moe.NumExperts;
        _moe = moe;
        // FP8 experts multiply inputs in the model dtype (W8A16: the CUDA backend decodes their codes in registers, the CPU
        // takes them dequantized), so the experts' input_scale goes unused; the router is one small GEMM that checkpoints
        // leave unquantized (vLLM's FP8 methods skip it too).
        if (w.InputQuantization(prefix + names.Router) is not null)
        {
            throw new ModelLoadException($"'{prefix}{names.Router}' is FP8: Celer runs a mixture-of-experts router in the model dtype; list it in quantization_config's ignore / modules_to_not_convert as published FP8 MoE checkpoints do");
        }

        _router = b.LoadWeight(w.Get(prefix + names.Router + ".weight", experts, hidden));
        _routerBias = names.RouterBias ? b.LoadWeight(w.Get(prefix + names.Router + ".bias", experts)) : null;
        if (names.GptOssExperts)
        {
            (_experts, _expertsDown, _expertOptions) = GptOssExperts.Load(prefix + "experts.", c, w, b);
        }
        else if (w.Contains(prefix + "experts.gate_up_proj"))
        {
            _experts = b.LoadExperts(prefix + "experts.gate_up_proj", w.Get(prefix + "experts.gate_up_proj", experts, 2 * inter, hidden).Reshaped(experts * 2 * inter, hidden));
            _expertsDown = b.LoadExperts(prefix + "experts.down_proj", w.Get(prefix + "experts.down_proj", experts, hidden, inter).Reshaped(experts * hidden, inter));
        }
        else
        {
            string E(int e, string name) => $"{prefix}experts.{e}.{name}.weight";
            _experts = b.LoadExperts(prefix + "experts.gate_up_proj", [.. Enumerable.Range(0, experts).SelectMany(e => new[]
            {
                w.Get(E(e, names.Gate), inter, hidden), w.Get(E(e, names.Up), inter, hidden),
            })]);
            _expertsDown = b.LoadExperts(prefix + "experts.down_proj", [.. Enumerable.Range(0, experts).Select(e => w.Get(E(e, names.Down), hidden, inter))]);
        }

        if (moe.SharedExpertIntermediateSize > 0)
        {
            _sharedExpert = new GatedMlp(prefix + "shared_expert.", hidden, moe.SharedExpertIntermediateSize, bias: false, fused: false, geluTanh: false, w, b, shard);
            _sharedExpertGate = b.LoadWeight(w.Get(prefix + "shared_expert_gate.weight", 1, hidden));
        }
    }

    public ActivationQuantization? InputQuantization => null;   // the router is never W8A8 (the constructor refuses)

    public void Forward(IModelBackend b, Activations a, int rows, Tensor input, Tensor output)
    {
        b.Linear(input, rows, _router, _routerBias, a.RouterLogits!);
        if (_sharedExpert is not null)
        {
            // Everything that reads the input runs before the routed experts, whose output may overwrite it.
            b.Linear(input, rows, _sharedExpertGate!, null, a.SharedExpertGate!);
            _sharedExpert.Forward(b, a, rows, input, a.SharedExpertOutput!);
        }

        b.MoeExperts(input, rows, a.RouterLogits!, _moe.TopK, _moe.NormalizeTopK, _experts, _expertsDown, output, _expertOptions);
        if (_sharedExpert is not null)
        {
            b.AddSigmoidGated(a.SharedExpertOutput!, a.SharedExpertGate!, rows, output);
        }
    }
}
