using Celer.Models.Weights;

namespace Celer.Models.Architectures;

/// <summary>
/// The head of a sequence classifier, applied on the host in fp32 to the one pooled hidden state of each sequence:
/// optionally a dense layer with tanh (BERT's <c>pooler.dense</c>, RoBERTa's <c>classifier.dense</c>), then the output
/// projection to the labels (BERT's <c>classifier</c>, RoBERTa's <c>classifier.out_proj</c>, a decoder's bias-free
/// <c>score</c>). A few hundred thousand multiply-adds per sequence: far below the encoder's own work for it, and fp32
/// throughout (transformers computes the head in the model dtype; the reference fixtures are fp32).
/// </summary>
public sealed class SequenceClassifier
{
    private readonly float[]? _dense, _denseBias;
    private readonly float[] _output;
    private readonly float[]? _outputBias;
    private readonly int _hidden;

    private SequenceClassifier(float[]? dense, float[]? denseBias, float[] output, float[]? outputBias, int hidden, int labels)
    {
        _dense = dense;
        _denseBias = denseBias;
        _output = output;
        _outputBias = outputBias;
        _hidden = hidden;
        NumLabels = labels;
    }

    public int NumLabels { get; }

    /// <summary>
    /// Loads the head: <paramref name="dense"/> names the dense + tanh layer's prefix (its <c>.weight</c> and <c>.bias</c>)
    /// or is null; <paramref name="output"/> the output projection's, whose bias is read when <paramref name="outputBias"/>.
    /// </summary>
    public static SequenceClassifier Load(IWeightSource weights, string? dense, string output, bool outputBias, int hidden, int labels) => new(
        dense is null ? null : Read(weights.Get(dense + ".weight", hidden, hidden)),
        dense is null ? null : Read(weights.Get(dense + ".bias", hidden)),
        Read(weights.Get(output + ".weight", labels, hidden)),
        outputBias ? Read(weights.Get(output + ".bias", labels)) : null,
        hidden,
        labels);

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
        return new SequenceClassifier(null, null, output, null, hidden, output.Length / hidden);
    }

    /// <summary>The label logits of one pooled hidden state.</summary>
    public float[] Logits(ReadOnlySpan<float> pooled)
    {
        if (pooled.Length != _hidden)
        {
            throw new ArgumentException($"The classifier reads {_hidden} values, not {pooled.Length}.", nameof(pooled));
        }

        ReadOnlySpan<float> input = pooled;
        if (_dense is not null)
        {
            var hidden = new float[_hidden];
            Project(_dense, _denseBias, pooled, hidden);
            for (int i = 0; i < hidden.Length; i++)
            {
                hidden[i] = MathF.Tanh(hidden[i]);
            }

            input = hidden;
        }

        var logits = new float[NumLabels];
        Project(_output, _outputBias, input, logits);
        return logits;
    }

    private static void Project(float[] weight, float[]? bias, ReadOnlySpan<float> x, Span<float> y)
    {
        // Sums in double: a head is small, and its scores are compared to 1e-3.
        for (int i = 0; i < y.Length; i++)
        {
            double sum = bias?[i] ?? 0;
            for (int k = 0; k < x.Length; k++)
            {
                sum += (double)weight[(i * x.Length) + k] * x[k];
            }

            y[i] = (float)sum;
        }
    }

    private static float[] Read(WeightTensor t) => t.ToFloats("a classifier head's weights");
}
