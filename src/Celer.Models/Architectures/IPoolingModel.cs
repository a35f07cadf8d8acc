using Celer.Models.Backend;
using Celer.Models.Config;

namespace Celer.Models.Architectures;

/// <summary>
/// A model run as a pooling model (embeddings, classification, scores): the final hidden states of the rows a step asks
/// for, and the head a classifier applies to its pooled state. <see cref="DecoderModel"/> (decoder embedders and
/// classifiers) and <see cref="EncoderModel"/> (BERT, RoBERTa) are both.
/// </summary>
public interface IPoolingModel
{
    ModelConfig Config { get; }

    /// <summary>The attention shape, which the backend's KV cache is set up for.</summary>
    AttentionSpec Attention { get; }

    /// <summary>A sequence classifier's head (<c>…ForSequenceClassification</c>); null for an embedding model.</summary>
    SequenceClassifier? Classifier { get; }

    /// <summary>
    /// Queues one step: the final hidden states (fp32) of <see cref="ForwardBatch.LogitsRows"/> travel to host slot
    /// <paramref name="slot"/> (<see cref="IModelBackend.QueueCopyToHost"/>), which <see cref="ReadHidden"/> reads. On a
    /// GPU the step may still run when this returns.
    /// </summary>
    void ForwardHidden(ForwardBatch batch, int slot);

    /// <summary>
    /// The rows the last <see cref="ForwardHidden"/> into <paramref name="slot"/> queued, <c>hidden_size</c> values each,
    /// once they are on the host; valid until the slot is used again.
    /// </summary>
    ReadOnlySpan<float> ReadHidden(int slot, int rows);

    /// <summary>Padding steps until the JIT has compiled the hot paths (see <see cref="DecoderModel.WarmUp"/>); returns the steps run.</summary>
    int WarmUp(TimeSpan budget);
}
