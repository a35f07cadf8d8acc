using Celer.Models.Backend;

namespace Celer.Backends.Cuda;

/// <summary>
/// An encoder's operators (BERT, XLM-RoBERTa; <c>encoder.cu</c>): the input embeddings with token types and positions,
/// LayerNorm, the post-norm residual step and GELU; and bidirectional attention, which the causal kernels run unchanged
/// through mask positions (<see cref="MaskPositions"/>).
/// </summary>
public sealed unsafe partial class CudaBackend
{
    private int[] _maskPositionsHost = [];
    private bool _maskPositionsReady;   // uploaded for this step (reset by BeginStep)

    public void EncoderEmbedding(Tensor words, Tensor? tokenTypes, Tensor positions, int positionOffset, Tensor output)
    {
        ForwardBatch batch = Batch;
        int rows = batch.NumTokens, hidden = checked((int)words.Columns);
        foreach (Tensor? table in (ReadOnlySpan<Tensor?>)[words, tokenTypes, positions, output])
        {
            if (table is not null && (table.Columns != hidden || table.DType != ActivationDType))
            {
                throw new ArgumentException($"{table} must have {hidden} columns of {ActivationDType}, as the word embeddings {words}.");
            }
        }

        // The host has the batch: refuse what would read outside a table rather than clamp it into a wrong row.
        CheckIds(batch.TokenIds, 0, words.Rows, "token id", words);
        CheckIds(batch.Positions, positionOffset, positions.Rows, $"position + offset {positionOffset}", positions);
        if (tokenTypes is not null && batch.TokenTypeIds is { } types)
        {
            CheckIds(types, 0, tokenTypes.Rows, "token type id", tokenTypes);
        }

        if (rows == 0)
        {
            return;
        }

        // No token type ids in the batch: every row is type 0 (the kernel takes nullptr for that).
        ulong ids = _tokenIds.Pointer, typeIds = batch.TokenTypeIds is null ? 0 : _tokenTypeIds.Pointer, rowPositions = _positions.Pointer;
        ulong wp = (ulong)words.Data, tp = (ulong)(tokenTypes?.Data ?? 0), pp = (ulong)positions.Data, o = (ulong)output.Data;
        int vocab = words.Rows, numTypes = tokenTypes?.Rows ?? 0, maxPositions = positions.Rows;
        void** args = stackalloc void*[] { &ids, &typeIds, &rowPositions, &positionOffset, &wp, &vocab, &tp, &numTypes, &pp, &maxPositions, &hidden, &o };
        Launch("encoder_embedding", (uint)rows, 1, Threads(Vectors(hidden)), args);
    }

    private static void CheckIds(ReadOnlySpan<int> ids, int offset, int tableRows, string what, Tensor table)
    {
        foreach (int id in ids)
        {
            if ((uint)(id + offset) >= (uint)tableRows)
            {
                throw new ArgumentOutOfRangeException(nameof(ids), $"A {what} of {id} is outside {table} ({tableRows} rows).");
            }
        }
    }

    public void LayerNorm(Tensor x, int rows, Tensor weight, Tensor bias, float eps, Tensor y)
    {
        int size = LayerNormSize(x, weight, bias);
        long normRows = rows * (x.Columns / size);
        if (normRows == 0)
        {
            return;
        }

        ulong xp = (ulong)x.Data, wp = (ulong)weight.Data, bp = (ulong)bias.Data, yp = (ulong)y.Data;
        void** args = stackalloc void*[] { &xp, &wp, &bp, &size, &eps, &yp };
        Launch("layer_norm", checked((uint)normRows), 1, Threads(Vectors(size)), args);
    }

    public void AddLayerNorm(Tensor x, Tensor residual, int rows, Tensor weight, Tensor bias, float eps)
    {
        int size = LayerNormSize(x, weight, bias);
        if (residual.Columns != x.Columns)
        {
            throw new ArgumentException($"The residual {residual} and {x} differ in width.", nameof(residual));
        }

        long normRows = rows * (x.Columns / size);
        if (normRows == 0)
        {
            return;
        }

        ulong xp = (ulong)x.Data, rp = (ulong)residual.Data, wp = (ulong)weight.Data, bp = (ulong)bias.Data;
        void** args = stackalloc void*[] { &xp, &rp, &wp, &bp, &size, &eps };
        Launch("add_layer_norm", checked((uint)normRows), 1, Threads(Vectors(size)), args);
    }

    /// <summary>
    /// The normalized width (weight's size): x's rows are whole multiples of it. Any width works (the kernels fall back to
    /// element-wise loads where a row is not a whole number of 16-byte vectors, or too long to keep in registers).
    /// </summary>
    private int LayerNormSize(Tensor x, Tensor weight, Tensor bias)
    {
        int size = checked((int)weight.ElementCount);
        if (size == 0 || bias.ElementCount != size || x.Columns % size != 0)
        {
            throw new ArgumentException($"LayerNorm of {x} by weight {weight} and bias {bias}: the weight and bias must have the same size, dividing the row.");
        }

        if (x.DType != ActivationDType || weight.DType != ActivationDType || bias.DType != ActivationDType)
        {
            throw new ArgumentException($"LayerNorm of {x} by {weight} and {bias} in a {ActivationDType} model: all three must be {ActivationDType}.");
        }

        return size;
    }

    public void Gelu(Tensor x, int rows, GeluForm form)
    {
        long n = rows * x.Columns;
        if (n == 0)
        {
            return;
        }

        ulong xp = (ulong)x.Data;
        int kind = (int)form;   // encoder.cu's gelu_of: 0 erf, 1 tanh, 2 quick
        void** args = stackalloc void*[] { &xp, &n, &kind };
        Launch("gelu", Blocks(Vectors(n)), 1, 256, args);
    }

    /// <summary>
    /// The positions a bidirectional (<see cref="AttentionSpec.Causal"/> false) attention passes to the causal kernels
    /// instead of the rows' own: seqLens[s] − 1 for every row of sequence s, so that each row sees keys [0, seqLen − 1],
    /// its whole sequence. Every kernel takes that unchanged: a row's keys are [lo, positions[row]] (lo = 0 without a
    /// window), and flash_attention.cu / flash_decode.cu bound a tile's keys by its first row's lo and its last row's
    /// position (flash_key_range) and mask per row (flash_row_range), which needs positions only non-decreasing along a
    /// tile, as equal ones are; attention.cu reads each row's own position. Uploaded once per step, at the first such
    /// call (BeginStep resets it). Refused (ArgumentException) unless every sequence is wholly in the step and there is
    /// no sliding window, as the spec requires.
    /// </summary>
    private ulong MaskPositions(ForwardBatch batch, AttentionSpec spec)
    {
        if (spec.SlidingWindow != 0)
        {
            throw new ArgumentException($"Bidirectional attention takes no sliding window (got {spec.SlidingWindow}).", nameof(spec));
        }

        if (_maskPositionsReady)
        {
            return _maskPositions.Pointer;
        }

        if (_capturing)
        {
            // The upload would be recorded from the staging buffer, which later steps overwrite; encoders run eagerly.
            throw new InvalidOperationException("Bidirectional attention cannot be recorded in a CUDA graph.");
        }

        if (_maskPositionsHost.Length < batch.NumTokens)
        {
            _maskPositionsHost = new int[Math.Max(batch.NumTokens, 2 * _maskPositionsHost.Length)];
        }

        for (int s = 0; s < batch.NumSequences; s++)
        {
            int start = batch.QueryStartLoc[s], length = batch.QueryStartLoc[s + 1] - start;
            if (length != batch.SeqLens[s])
            {
                throw new ArgumentException(
                    $"Bidirectional attention needs each sequence whole in the step: sequence {s} has {length} query rows of {batch.SeqLens[s]} tokens.", nameof(spec));
            }

            _maskPositionsHost.AsSpan(start, length).Fill(batch.SeqLens[s] - 1);
        }

        _maskPositions.Upload(_maskPositionsHost.AsSpan(0, batch.NumTokens));
        _maskPositionsReady = true;
        return _maskPositions.Pointer;
    }
}
