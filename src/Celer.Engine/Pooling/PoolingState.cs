namespace Celer.Engine;

/// <summary>
/// One pooling request's pooled state across the steps its prompt spans (chunked prefill): the sum of its hidden
/// states (mean), or the one row its pooling keeps (the first for CLS, the last for last-token pooling). The sum is
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
    /// The request's vector: the pooled hidden state, cut to <see cref="PoolingParams.Dimensions"/> and then
    /// L2-normalized when asked (or by the model's default), as vLLM's embedding head does.
    /// </summary>
    public float[] Finish()
    {
        if (_rows == 0)
        {
            throw new InvalidOperationException("A pooling request finished with no hidden state pooled.");
        }

        int length = Params.Dimensions ?? _sum.Length;
        double norm = 0;
        for (int i = 0; i < length; i++)
        {
            norm += _sum[i] / _rows * (_sum[i] / _rows);
        }

        // torch.nn.functional.normalize's eps: a zero vector stays zero.
        double scale = (Params.Normalize ?? pooler.Normalize) ? 1 / Math.Max(Math.Sqrt(norm), 1e-12) : 1;
        var vector = new float[length];
        for (int i = 0; i < length; i++)
        {
            vector[i] = (float)(_sum[i] / _rows * scale);
        }

        return vector;
    }
}
