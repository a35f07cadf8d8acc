using Celer.Models.Backend;
using Celer.Models.Config;

namespace Celer.Models.Architectures;

/// <summary>The step's activation buffers, sized once for the largest step (rows = tokens in the step).</summary>
internal sealed class Activations
{
    public Activations(ModelConfig c, IModelBackend b, int maxTokens, int maxLogitsRows)
    {
        int qDim = c.NumAttentionHeads * c.HeadDim, kvDim = c.NumKeyValueHeads * c.HeadDim;
        Residual = b.Allocate("residual", maxTokens, c.HiddenSize);
        Hidden = b.Allocate("hidden", maxTokens, c.HiddenSize);
        Q = b.Allocate("q", maxTokens, qDim);
        K = b.Allocate("k", maxTokens, kvDim);
        V = b.Allocate("v", maxTokens, kvDim);
        AttentionOutput = b.Allocate("attn_out", maxTokens, qDim);
        Gate = b.Allocate("gate", maxTokens, c.IntermediateSize);
        Up = b.Allocate("up", maxTokens, c.IntermediateSize);
        LogitsHidden = b.Allocate("logits_hidden", maxLogitsRows, c.HiddenSize);
        Logits = b.Allocate("logits", maxLogitsRows, c.VocabSize);
    }

    public Tensor Residual { get; }
    public Tensor Hidden { get; }
    public Tensor Q { get; }
    public Tensor K { get; }
    public Tensor V { get; }
    public Tensor AttentionOutput { get; }
    public Tensor Gate { get; }
    public Tensor Up { get; }
    public Tensor LogitsHidden { get; }
    public Tensor Logits { get; }
}
