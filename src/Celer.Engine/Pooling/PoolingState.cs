using System.Numerics;
using System.Runtime.InteropServices;
using Celer.Models.Architectures;
using Celer.Models.Config;

namespace Celer.Engine;

/// <summary>
/// One pooling request's pooled state across the steps its prompt spans (chunked prefill): the sum of its hidden
/// states (mean), their elementwise maximum (max), or the one row its pooling keeps (the first for CLS, the last for last-token pooling). The sum is
/// kept in double, so a long prompt's mean does not depend on how it was chunked. Mean and max pooling are handed every
/// row in position order, chunk after chunk, so the first <see cref="PoolingParams.ExcludedPromptTokens"/> rows they are
/// handed are the prompt's, which they leave out as sentence-transformers' mask does.
/// </summary>
internal sealed class PoolingState(PoolingParams parameters, PoolerConfig pooler)
{
    private readonly double[] _sum = new double[pooler.HiddenSize];
    private int _rows;
    private int _excluded;   // prompt rows left out so far

    public PoolingParams Params { get; } = parameters;

    /// <summary>Adds the request's consecutive rows of one step (<paramref name="hidden"/> values each), in position order.</summary>
    public void AddRows(ReadOnlySpan<float> rows, int hidden)
    {
        for (int r = 0; r < rows.Length / hidden; r++)
        {
            Add(rows.Slice(r * hidden, hidden));
        }
    }

    /// <summary>Adds a row of final hidden states this request's pooling reads (its plan chose which).</summary>
    public void Add(ReadOnlySpan<float> hidden)
    {
        if (pooler.Type is PoolingType.Mean or PoolingType.Max && _excluded < Params.ExcludedPromptTokens)
        {
            _excluded++;
            return;
        }

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

        AddWidened(hidden, _sum);
        _rows++;
    }

    /// <summary>sum[i] += x[i] in double, a vector of floats widened at a time (a mean reads every row of its prompt).</summary>
    private static void AddWidened(ReadOnlySpan<float> x, Span<double> sum)
    {
        int i = 0;
        if (Vector.IsHardwareAccelerated)
        {
            Span<Vector<double>> wide = MemoryMarshal.Cast<double, Vector<double>>(sum);
            for (; i + Vector<float>.Count <= x.Length; i += Vector<float>.Count)
            {
                Vector.Widen(new Vector<float>(x[i..]), out Vector<double> low, out Vector<double> high);
                int v = i / Vector<double>.Count;
                wide[v] += low;
                wide[v + 1] += high;
            }
        }

        for (; i < x.Length; i++)
        {
            sum[i] += x[i];
        }
    }

    /// <summary>Starts over (the request was preempted and is recomputed from its first token).</summary>
    public void Reset()
    {
        Array.Clear(_sum);
        _rows = 0;
        _excluded = 0;
    }

    /// <summary>
    /// The request's output. An embedding: the pooled hidden state through the model's Dense modules, cut to
    /// <see cref="PoolingParams.Dimensions"/> and then L2-normalized when asked (or by the model's default), as vLLM's embedding head does. A classification or a
    /// score: <paramref name="classifier"/>'s logits of the pooled state through the task's activation.
    /// </summary>
    public float[] Finish(SequenceClassifier? classifier)
    {
        if (_rows == 0 && _excluded == 0)
        {
            throw new InvalidOperationException("A pooling request finished with no hidden state pooled.");
        }

        // Every row was the prompt's: sentence-transformers' mean of nothing is the zero vector (its count is clamped
        // to 1e-9); its max of nothing is -inf, which no JSON number carries, so max gives zeros too. The server
        // refuses such inputs; this keeps the engine's answer defined for a caller that sends one.
        int rows = Math.Max(_rows, 1);

        if (Params.Task != PoolingTask.Embed)
        {
            var pooled = new float[_sum.Length];
            for (int i = 0; i < pooled.Length; i++)
            {
                pooled[i] = (float)(_sum[i] / rows);
            }

            ClassifierConfig config = pooler.Classifier ?? throw new InvalidOperationException("A classification request reached a model without a classifier.");
            float[] logits = (classifier ?? throw new InvalidOperationException("The classifier's head is not loaded.")).Logits(pooled);
            if (!Params.UseActivation)
            {
                return logits;
            }

            return Params.Task == PoolingTask.Classify ? ClassifierActivation.Classify(logits, config) : ClassifierActivation.Score(logits, config);
        }

        double[] embedding = [.. _sum.Select(s => s / rows)];
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
