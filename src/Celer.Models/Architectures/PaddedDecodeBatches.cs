using Celer.Models.Backend;

namespace Celer.Models.Architectures;

/// <summary>
/// Decode batches padded to their graph bucket (padding sequences write no KV: slot −1; they attend to the null block and
/// their outputs are dropped), one kept per (bucket, rows per sequence) and refilled in place: its block tables alone are
/// bucket × stride ints (256 KB at batch 256 and a 4k context), which a decode step should not allocate. A sequence feeds
/// one token, or a speculative verify step's few (its last token and its drafts).
/// </summary>
internal sealed class PaddedDecodeBatches(int blockTableStride)
{
    private readonly Dictionary<(int Bucket, int Rows), ForwardBatch> _batches = [];

    /// <summary>
    /// <paramref name="batch"/> (<paramref name="rows"/> tokens per sequence, every row a logits row) padded to
    /// <paramref name="bucket"/> sequences at the fixed stride; its real rows come first.
    /// </summary>
    public ForwardBatch Pad(ForwardBatch batch, int bucket, int rows = 1)
    {
        int n = batch.NumSequences, stride = blockTableStride, total = bucket * rows;
        if (!_batches.TryGetValue((bucket, rows), out ForwardBatch? padded))
        {
            padded = new ForwardBatch
            {
                TokenIds = new int[total],
                Positions = new int[total],
                SlotMapping = new int[total],
                QueryStartLoc = Enumerable.Range(0, bucket + 1).Select(s => s * rows).ToArray(),
                SeqLens = new int[bucket],
                BlockTables = new int[bucket * stride],
                MaxBlocksPerSeq = stride,
                LogitsRows = Enumerable.Range(0, total).ToArray(),
            };
            _batches[(bucket, rows)] = padded;
        }

        batch.TokenIds.CopyTo(padded.TokenIds, 0);
        padded.TokenIds.AsSpan(batch.NumTokens).Clear();
        batch.Positions.CopyTo(padded.Positions, 0);
        batch.SlotMapping.CopyTo(padded.SlotMapping, 0);
        padded.SlotMapping.AsSpan(batch.NumTokens).Fill(-1);
        batch.SeqLens.CopyTo(padded.SeqLens, 0);
        padded.SeqLens.AsSpan(n).Fill(rows);
        for (int s = 0; s < n; s++)
        {
            // Entries past a row's own blocks may hold an earlier step's ids: attention never reads past a position's block.
            batch.BlockTables.AsSpan(s * batch.MaxBlocksPerSeq, batch.MaxBlocksPerSeq).CopyTo(padded.BlockTables.AsSpan(s * stride));
        }

        for (int s = n; s < bucket; s++)
        {
            // A padding sequence's rows sit at positions 0 .. rows − 1 of the null block.
            padded.BlockTables[s * stride] = 0;
            for (int r = 0; r < rows; r++)
            {
                padded.Positions[(s * rows) + r] = r;
            }
        }

        // Pending tokens are gathered before the graph runs, into the same token-id rows.
        return batch.PendingTokens.Length == 0 ? padded : padded with { PendingTokens = batch.PendingTokens };
    }
}
