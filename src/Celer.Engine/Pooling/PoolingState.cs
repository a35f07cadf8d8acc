using Celer.Models.Architectures;
using Celer.Models.Config;

namespace Celer.Engine;

/// <summary>
/// One pooling request's pooled state across the steps its prompt spans (chunked prefill): the sum of its hidden
/// states (mean), their elementwise maximum (max), or the one row its pooling keeps (the first for CLS, the last for last-token pooling). The sum is
/// kept in double, so a long prompt's mean does not depend on how it was chunked.
/// </summary>
internal sealed class PoolingState(PoolingParams parameters, PoolerConfig pooler)
{
    private readonly double[] _sum = new double[pooler.HiddenSize];
    private int _rows;

    public PoolingParams Params { get; } = parameters;

    /// <summary>Adds a row of final hidden states this request's pooling reads (its plan chose which).</summary>
    public void Add(ReadOnlySpan<float> hidden)
    {
        if (pooler.Type == PoolingType.Max)
        {
            // The running maximum is kept in _sum as one "row", so Finish reads it as it reads a single row.
            for (int i = 0; i < _sum.Length; i++)
            {
                _sum[i] = _rows == 0 ? hidden[i] : Math.Max(_sum[i], hidden[i]);
            }

            _rows = 1;
            return;
        }

        if (pooler.Type != PoolingType.Mean)
        {
            // CLS and last-token pooling are given exactly their one row.
            Array.Clear(_sum);
            _rows = 0;
        }

        for (int i = 0; i < _sum.Length; i++)
        {
            _sum[i] += hidden[i];
        }

        _rows++;
    }

    /// <summary>Starts over (the request was preempted and is recomputed from its first token).</summary>
    public void Reset()
    {
        Array.Clear(_sum);
        _rows = 0;
    }

    /// <summary>
    /// The request's output. An embedding: the pooled hidden state through the model's Dense modules, cut to
    /// <see cref="PoolingParams.Dimensions"/> and then L2-normalized when asked (or by the model's default), as vLLM's embedding head does. A classification or a
    /// score: <paramref name="classifier"/>'s logits of the pooled state through the task's activation.
    /// </summary>
    public float[] Finish(SequenceClassifier? classifier)
    {
        if (_rows == 0)
        {
            throw new InvalidOperationException("A pooling request finished with no hidden state pooled.");
        }

        if (Params.Task != PoolingTask.Embed)
        {
            var pooled = new float[_sum.Length];
            for (int i = 0; i < pooled.Length; i++)
            {
                pooled[i] = (float)(_sum[i] / _rows);
            }

            ClassifierConfig config = pooler.Classifier ?? throw new InvalidOperationException("A classification request reached a model without a classifier.");
            float[] logits = (classifier ?? throw new InvalidOperationException("The classifier's head is not loaded.")).Logits(pooled);
            if (!Params.UseActivation)
            {
                return logits;
            }

            return Params.Task == PoolingTask.Classify ? ClassifierActivation.Classify(logits, config) : ClassifierActivation.Score(logits, config);
        }

        double[] embedding = [.. _sum.Select(s => s / _rows)];
        foreach (DenseModule dense in pooler.Dense)
        {
            embedding = [.. dense.Apply([.. embedding.Select(v => (float)v)]).Select(v => (double)v)];
        }

        int length = Params.Dimensions ?? embedding.Length;
        double norm = 0;
        for (int i = 0; i < length; i++)
        {
            norm += embedding[i] * embedding[i];
        }

        // torch.nn.functional.normalize's eps: a zero vector stays zero.
        double scale = (Params.Normalize ?? pooler.Normalize) ? 1 / Math.Max(Math.Sqrt(norm), 1e-12) : 1;
        var vector = new float[length];
        for (int i = 0; i < length; i++)
        {
            vector[i] = (float)(embedding[i] * scale);
        }

        return vector;
    }
}
