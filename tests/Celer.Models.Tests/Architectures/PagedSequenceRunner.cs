using Celer.Models.Architectures;
using Celer.Models.Backend;
using Celer.TestSupport;

namespace Celer.Models.Tests.Architectures;

/// <summary>
/// Drives a <see cref="DecoderModel"/> the way the engine's runner does, without the scheduler: each sequence owns a
/// fixed range of KV blocks, and every step feeds the tokens each sequence has not computed yet as one flat batch.
/// Returns the logits of every fed row so tests can check prompt logprobs as well as the next token.
/// </summary>
internal sealed class PagedSequenceRunner
{
    private readonly DecoderModel _model;
    private readonly int _blockSize;
    private readonly int _maxBlocksPerSeq;

    public PagedSequenceRunner(DecoderModel model, int blockSize, int maxBlocksPerSeq)
    {
        _model = model;
        _blockSize = blockSize;
        _maxBlocksPerSeq = maxBlocksPerSeq;
    }

    /// <summary>Runs one step. <paramref name="sequences"/>[s] = (slot index of the sequence, all its tokens, how many are already computed).</summary>
    public float[][] Step(IReadOnlyList<(int Slot, IReadOnlyList<int> Tokens, int NumComputed)> sequences)
    {
        var tokenIds = new List<int>();
        var positions = new List<int>();
        var slots = new List<int>();
        var queryStart = new List<int> { 0 };
        var seqLens = new List<int>();
        var blockTables = new int[sequences.Count * _maxBlocksPerSeq];
        for (int s = 0; s < sequences.Count; s++)
        {
            (int slot, IReadOnlyList<int> tokens, int computed) = sequences[s];
            for (int j = 0; j < _maxBlocksPerSeq; j++)
            {
                // Block 0 is the engine's null block; sequence slots start at block 1.
                blockTables[s * _maxBlocksPerSeq + j] = 1 + slot * _maxBlocksPerSeq + j;
            }

            for (int p = computed; p < tokens.Count; p++)
            {
                tokenIds.Add(tokens[p]);
                positions.Add(p);
                slots.Add(blockTables[s * _maxBlocksPerSeq + p / _blockSize] * _blockSize + p % _blockSize);
            }

            queryStart.Add(tokenIds.Count);
            seqLens.Add(tokens.Count);
        }

        var batch = new ForwardBatch
        {
            TokenIds = [.. tokenIds],
            Positions = [.. positions],
            SlotMapping = [.. slots],
            QueryStartLoc = [.. queryStart],
            SeqLens = [.. seqLens],
            BlockTables = blockTables,
            MaxBlocksPerSeq = _maxBlocksPerSeq,
            LogitsRows = Enumerable.Range(0, tokenIds.Count).ToArray(),
        };
        int vocab = _model.Config.VocabSize;
        var logits = new float[tokenIds.Count][];
        _model.Forward(batch, (first, count, rows) =>
        {
            for (int r = 0; r < count; r++)
            {
                logits[first + r] = rows.AsSpan(r * vocab, vocab).ToArray();
            }
        });
        return logits;
    }

    /// <summary>log-softmax of one row in double precision, with its top-k (ties to the lower id).</summary>
    public static GeneratedPosition Position(float[] logits, int tokenId, int topK)
    {
        double max = logits.Max();
        double lse = max + Math.Log(logits.Sum(x => Math.Exp(x - max)));
        var top = logits.Select((v, i) => (TokenId: i, Logprob: (float)(v - lse)))
            .OrderByDescending(t => t.Logprob).ThenBy(t => t.TokenId).Take(topK).ToList();
        return new GeneratedPosition(tokenId, (float)(logits[tokenId] - lse), top);
    }

    public static int ArgMax(float[] logits)
    {
        int best = 0;
        for (int i = 1; i < logits.Length; i++)
        {
            if (logits[i] > logits[best])
            {
                best = i;
            }
        }

        return best;
    }
}
