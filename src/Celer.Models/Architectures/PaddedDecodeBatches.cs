using Celer.Models.Backend;

namespace Celer.Models.Architectures;

/// <summary>
/// Decode batches padded to their graph bucket (padding rows write no KV: slot −1; they attend to the null block and
/// their outputs are dropped), one kept per bucket and refilled in place: its block tables alone are bucket × stride
/// ints (256 KB at batch 256 and a 4k context), which a decode step should not allocate.
/// </summary>
internal sealed class PaddedDecodeBatches(int blockTableStride)
{
    private readonly Dictionary<int, ForwardBatch> _batches = [];

    /// <summary><paramref name="batch"/> (one token per sequence) padded to <paramref name="bucket"/> rows at the fixed stride.</summary>
    public ForwardBatch Pad(ForwardBatch batch, int bucket)
    {
        int n = batch.NumTokens, stride = blockTableStride;
        if (!_batches.TryGetValue(bucket, out ForwardBatch? padded))
        {
            padded = new ForwardBatch
            {
                TokenIds = new int[bucket],
                Positions = new int[bucket],
                SlotMapping = new int[bucket],
                QueryStartLoc = Enumerable.Range(0, bucket + 1).ToArray(),
                SeqLens = new int[bucket],
                BlockTables = new int[bucket * stride],
                MaxBlocksPerSeq = stride,
                LogitsRows = Enumerable.Range(0, bucket).ToArray(),
            };
            _batches[bucket] = padded;
        }

        Fill(batch.TokenIds, padded.TokenIds, 0);
        Fill(batch.Positions, padded.Positions, 0);
        Fill(batch.SlotMapping, padded.SlotMapping, -1);
        Fill(batch.SeqLens, padded.SeqLens, 1);
        for (int s = 0; s < n; s++)
        {
            // Entries past a row's own blocks may hold an earlier step's ids: attention never reads past a position's block.
            batch.BlockTables.AsSpan(s * batch.MaxBlocksPerSeq, batch.MaxBlocksPerSeq).CopyTo(padded.BlockTables.AsSpan(s * stride));
        }

        for (int s = n; s < bucket; s++)
        {
            padded.BlockTables[s * stride] = 0;   // a padding row at position 0 reads the null block
        }

        // Pending tokens are gathered before the graph runs, into the same token-id rows.
        return batch.PendingTokens.Length == 0 ? padded : padded with { PendingTokens = batch.PendingTokens };
    }

    /// <summary>The real rows' values, then <paramref name="fill"/> for the padding rows.</summary>
    private static void Fill(int[] values, int[] padded, int fill)
    {
        values.CopyTo(padded, 0);
        padded.AsSpan(values.Length).Fill(fill);
    }
}
