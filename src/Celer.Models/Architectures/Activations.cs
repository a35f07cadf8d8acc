using Celer.Models.Backend;
using Celer.Models.Config;
using Celer.Models.Weights;

namespace Celer.Models.Architectures;

/// <summary>
/// The step's activation buffers, sized once for the largest step (rows = tokens in the step), in the backend's
/// activation dtype; the logits are fp32, what the sampler reads.
/// </summary>
internal sealed class Activations
{
    /// <param name="c">The config of what this rank computes (its heads and intermediate size under tensor parallelism).</param>
    /// <param name="localVocab">Tensor parallelism: the vocabulary part of this rank's LM head (0: the whole vocabulary, one rank).</param>
    public Activations(ModelConfig c, IModelBackend b, int maxTokens, int maxLogitsRows, int localVocab = 0)
    {
        int qDim = c.NumAttentionHeads * c.HeadDim, kvDim = c.NumKeyValueHeads * c.HeadDim;
        DType t = b.ActivationDType;
        Residual = b.Allocate("residual", t, maxTokens, c.HiddenSize);
        Hidden = b.Allocate("hidden", t, maxTokens, c.HiddenSize);
        Qkv = b.Allocate("qkv", t, maxTokens, qDim + 2 * kvDim);
        Q = b.Allocate("q", t, maxTokens, qDim);
        AttentionOutput = b.Allocate("attn_out", t, maxTokens, qDim);
        // Dense layers and Qwen2-MoE's shared expert go through the same gated-MLP buffers.
        int intermediate = Math.Max(c.IntermediateSize, c.Moe?.SharedExpertIntermediateSize ?? 0);
        GateUp = b.Allocate("gate_up", t, maxTokens, 2 * intermediate);
        MlpHidden = b.Allocate("mlp_hidden", t, maxTokens, intermediate);
        if (c.Moe is { } moe)
        {
            RouterLogits = b.Allocate("router_logits", t, maxTokens, moe.NumExperts);
            if (moe.SharedExpertIntermediateSize > 0)
            {
                SharedExpertGate = b.Allocate("shared_expert_gate", t, maxTokens, 1);
                SharedExpertOutput = b.Allocate("shared_expert_out", t, maxTokens, c.HiddenSize);
            }
        }
        LogitsHidden = b.Allocate("logits_hidden", t, maxLogitsRows, c.HiddenSize);
        Logits = b.Allocate("logits", DType.F32, maxLogitsRows, c.VocabSize);
        LocalLogits = localVocab > 0 ? b.Allocate("local_logits", DType.F32, maxLogitsRows, localVocab) : null;
    }

    public Tensor Residual { get; }
    public Tensor Hidden { get; }

    /// <summary>The fused q/k/v projection: [rows, (heads + 2·kvHeads)·headDim].</summary>
    public Tensor Qkv { get; }

    /// <summary>Queries after the optional q norm and RoPE (keys and values go straight into the KV cache).</summary>
    public Tensor Q { get; }
    public Tensor AttentionOutput { get; }

    /// <summary>The fused gate/up projection: [rows, 2·intermediate].</summary>
    public Tensor GateUp { get; }

    /// <summary>silu(gate)·up, the down projection's input.</summary>
    public Tensor MlpHidden { get; }

    /// <summary>A MoE model's router logits, [rows, experts]; null for dense models.</summary>
    public Tensor? RouterLogits { get; }

    /// <summary>Qwen2-MoE's shared expert: its gate's logit per row ([rows, 1]) and its output; null elsewhere.</summary>
    public Tensor? SharedExpertGate { get; }
    public Tensor? SharedExpertOutput { get; }
    public Tensor LogitsHidden { get; }
    public Tensor Logits { get; }

    /// <summary>Tensor parallelism: this rank's part of the vocabulary's logits, gathered into <see cref="Logits"/>; null with one rank.</summary>
    public Tensor? LocalLogits { get; }
}
