using Celer.Models.Weights;

namespace Celer.Models.Architectures;

/// <summary>
/// The head of a sequence classifier, applied on the host in fp32 to the one pooled hidden state of each sequence:
/// optionally a dense layer with tanh (BERT's <c>pooler.dense</c>, RoBERTa's <c>classifier.dense</c>), then the output
/// projection to the labels (BERT's <c>classifier</c>, RoBERTa's <c>classifier.out_proj</c>, a decoder's bias-free
/// <c>score</c>), each a <see cref="HostLinear"/>. fp32 throughout (transformers computes the head in the model dtype;
/// the reference fixtures are fp32).
/// </summary>
public sealed class SequenceClassifier
{
    private readonly HostLinear? _dense;
    private readonly HostLinear _output;

    private SequenceClassifier(HostLinear? dense, HostLinear output)
    {
        _dense = dense;
        _output = output;
    }

    public int NumLabels => _output.OutFeatures;

    /// <summary>
    /// Loads the head: <paramref name="dense"/> names the dense + tanh layer's prefix (its <c>.weight</c> and <c>.bias</c>)
    /// or is null; <paramref name="output"/> the output projection's, whose bias is read when <paramref name="outputBias"/>.
    /// </summary>
    public static SequenceClassifier Load(IWeightSource weights, string? dense, string output, bool outputBias, int hidden, int labels) => new(
        dense is null ? null : new HostLinear(Read(weights.Get(dense + ".weight", hidden, hidden)), Read(weights.Get(dense + ".bias", hidden)), hidden, hidden),
        new HostLinear(Read(weights.Get(output + ".weight", labels, hidden)), outputBias ? Read(weights.Get(output + ".bias", labels)) : null, hidden, labels));

    /// <summary>
    /// vLLM's LLM-as-reranker head (<see cref="Config.ClassifierConfig.Method"/>), from the rows of the LM head
    /// <paramref name="lmHead"/> ([vocab, hidden]) of <paramref name="tokenIds"/>: the rows as they are (no_post_processing),
    /// or for from_2_way_softmax the one row row(second) − row(first), taken in fp32 as vLLM subtracts them.
    /// </summary>
    public static SequenceClassifier FromLmHead(WeightTensor lmHead, IReadOnlyList<int> tokenIds, string method, int hidden)
    {
        int vocab = lmHead.Shape[0];
        if (lmHead.Shape is not [_, var columns] || columns != hidden)
        {
            throw new ModelLoadException($"'{lmHead.Name}' has shape {WeightTensor.FormatShape(lmHead.Shape)}; a classifier's rows need [vocab, {hidden}]");
        }

        float[] all = Read(lmHead);
        float[] Row(int id) => (uint)id < (uint)vocab
            ? all.AsSpan(id * hidden, hidden).ToArray()
            : throw new ModelLoadException($"classifier_from_token's id {id} is outside '{lmHead.Name}' ({vocab} rows)");
        float[] output = method == Config.ClassifierConfig.FromTwoWaySoftmax
            ? [.. Row(tokenIds[1]).Zip(Row(tokenIds[0]), (yes, no) => yes - no)]
            : [.. tokenIds.SelectMany(Row)];
        return new SequenceClassifier(null, new HostLinear(output, null, hidden, output.Length / hidden));
    }

    /// <summary>The label logits of one pooled hidden state.</summary>
    public float[] Logits(ReadOnlySpan<float> pooled)
    {
        float[]? hidden = _dense is null ? null : [.. _dense.Apply(pooled).Select(sum => MathF.Tanh((float)sum))];
        return [.. _output.Apply(hidden ?? pooled).Select(sum => (float)sum)];
    }

    private static float[] Read(WeightTensor t) => t.ToFloats("a classifier head's weights");
}
