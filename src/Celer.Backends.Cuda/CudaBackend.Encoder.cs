using Celer.Models.Backend;

namespace Celer.Backends.Cuda;

/// <summary>
/// An encoder's operators (BERT, XLM-RoBERTa; <c>encoder.cu</c>): the input embeddings with token types and positions,
/// LayerNorm, the post-norm residual step and GELU; and bidirectional attention (theirs, and EmbeddingGemma's with its
/// window), which the causal kernels run through the keys each row is given (<see cref="MaskPositions"/>).
/// </summary>
public sealed unsafe partial class CudaBackend
{
    private int[] _maskPositionsHost = [];
    private bool _maskPositionsReady;   // uploaded for this step (reset by BeginStep)
    private int _maskWindow;            // the window whose first and last keys the upload holds, if any

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
    /// What a bidirectional (<see cref="AttentionSpec.Causal"/> false) attention passes to the causal kernels instead of
    /// the rows' own positions: each row's last key, and with a window W each row's first key (the kernels' key_lo;
    /// 0 without a window). Without a window every row of sequence s gets seqLens[s] − 1, so each sees keys
    /// [0, seqLen − 1], its whole sequence; with one, row q gets [max(0, q − W + 1), min(seqLen − 1, q + W − 1)]
    /// (EmbeddingGemma's sliding layers), which no window below a position expresses. Every kernel takes that
    /// unchanged: flash_attention.cu / flash_decode.cu bound a tile's keys by its first row's first key and its last
    /// row's last key (flash_key_range) and mask per row (flash_row_range), which needs both only non-decreasing along a
    /// tile, as they are; attention.cu reads each row's own. The buffer holds [last keys | windowed last keys | windowed
    /// first keys], uploaded at a step's first such call (BeginStep resets it) and its windowed part again only for
    /// another window. Refused (ArgumentException) unless every sequence is wholly in the step, as the spec requires.
    /// </summary>
    private (ulong Positions, ulong KeyLo) MaskPositions(ForwardBatch batch, AttentionSpec spec)
    {
        int rows = batch.NumTokens, window = spec.SlidingWindow;
        if (!_maskPositionsReady || (window > 0 && window != _maskWindow))
        {
            if (_capturing)
            {
                // The upload would be recorded from the staging buffer, which later steps overwrite; encoders run eagerly.
                throw new InvalidOperationException("Bidirectional attention cannot be recorded in a CUDA graph.");
            }

            if (_maskPositionsHost.Length < 3 * rows)
            {
                _maskPositionsHost = new int[Math.Max(3 * rows, 2 * _maskPositionsHost.Length)];
            }

            bool whole = !_maskPositionsReady;   // a new step: the unwindowed last keys too
            for (int s = 0; s < batch.NumSequences; s++)
            {
                int start = batch.QueryStartLoc[s], length = batch.QueryStartLoc[s + 1] - start;
                if (length != batch.SeqLens[s])
                {
                    throw new ArgumentException(
                        $"Bidirectional attention needs each sequence whole in the step: sequence {s} has {length} query rows of {batch.SeqLens[s]} tokens.", nameof(spec));
                }

                if (whole)
                {
                    _maskPositionsHost.AsSpan(start, length).Fill(length - 1);
                }

                for (int q = 0; window > 0 && q < length; q++)
                {
                    _maskPositionsHost[rows + start + q] = Math.Min(length - 1, q + window - 1);
                    _maskPositionsHost[(2 * rows) + start + q] = Math.Max(0, q - window + 1);
                }
            }

            _maskPositions.Reserve(3 * rows);   // before any upload of the step: the buffer does not move under an earlier one
            int from = whole ? 0 : rows, count = (window > 0 ? 3 * rows : rows) - from;
            UploadAsync(_maskPositions.Pointer + ((ulong)from * sizeof(int)), _maskPositionsHost.AsSpan(from, count));
            _maskPositionsReady = true;
            _maskWindow = window;   // a new step's upload without a window holds none: the last step's is stale
        }

        ulong mask = _maskPositions.Pointer;
        return window > 0 ? (mask + ((ulong)rows * sizeof(int)), mask + (2UL * (ulong)rows * sizeof(int))) : (mask, 0);
    }
}
