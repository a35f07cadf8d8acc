using Celer.Engine.Scheduling;
using Celer.Models.Backend;

namespace Celer.Engine.Execution;

internal enum LogitsRowKind
{
    /// <summary>The last row of a sequence whose scheduled tokens reach its end: sample the next token.</summary>
    Sample,

    /// <summary>A prompt row whose logits give the logprob of the next prompt token.</summary>
    PromptLogprob,
}

/// <summary>What one logits row is for: which request, and which position of it.</summary>
internal readonly record struct LogitsRowUse(string RequestId, LogitsRowKind Kind, int Position);

/// <summary>One step's flat batch plus what each logits row is for.</summary>
internal sealed class StepPlan
{
    private StepPlan(ForwardBatch batch, LogitsRowUse[] uses, Dictionary<string, int> promptLogprobsStart, List<(int Row, RunnerRequest Request)> pendingRows)
    {
        Batch = batch;
        Uses = uses;
        PromptLogprobsStart = promptLogprobsStart;
        PendingRows = pendingRows;
    }

    public ForwardBatch Batch { get; }

    /// <summary>
    /// Rows whose token the step still running samples (async scheduling): past the request's known tokens, with a
    /// placeholder in the batch until <see cref="ResolvePendingRows"/> or the device fills it in.
    /// </summary>
    public List<(int Row, RunnerRequest Request)> PendingRows { get; }

    public LogitsRowUse[] Uses { get; }

    /// <summary>Per request with prompt logprobs this step: the prompt position of its first entry.</summary>
    public Dictionary<string, int> PromptLogprobsStart { get; }

    public static StepPlan Build(SchedulerOutput so, IReadOnlyDictionary<string, RunnerRequest> requests, int blockSize)
    {
        int numTokens = so.TotalNumScheduledTokens;
        var ids = so.ScheduledNewRequests.Select(r => r.RequestId).Concat(so.ScheduledCachedRequests.Select(r => r.RequestId)).ToList();
        int maxBlocks = ids.Max(id => requests[id].BlockIds.Count);

        var tokenIds = new int[numTokens];
        var positions = new int[numTokens];
        var slots = new int[numTokens];
        var queryStart = new int[ids.Count + 1];
        var seqLens = new int[ids.Count];
        var blockTables = new int[ids.Count * maxBlocks];
        var logitsRows = new List<int>();
        var uses = new List<LogitsRowUse>();
        var promptStart = new Dictionary<string, int>(StringComparer.Ordinal);
        var pendingRows = new List<(int, RunnerRequest)>();

        int row = 0;
        for (int s = 0; s < ids.Count; s++)
        {
            RunnerRequest r = requests[ids[s]];
            int n = so.NumScheduledTokens[r.Id];
            int start = r.NumComputedTokens;
            r.BlockIds.CopyTo(blockTables.AsSpan(s * maxBlocks));
            int? promptLogprobs = r.Sampling.Params.PromptLogprobs;
            for (int p = start; p < start + n; p++, row++)
            {
                if (p < r.TokenIds.Count)
                {
                    tokenIds[row] = r.TokenIds[p];
                }
                else
                {
                    pendingRows.Add((row, r));
                }

                positions[row] = p;
                slots[row] = r.BlockIds[p / blockSize] * blockSize + p % blockSize;

                // Row p predicts token p + 1: a prompt logprob while p + 1 is still inside the prompt.
                if (promptLogprobs is not null && p + 1 < r.PromptLength)
                {
                    promptStart.TryAdd(r.Id, p + 1);
                    logitsRows.Add(row);
                    uses.Add(new LogitsRowUse(r.Id, LogitsRowKind.PromptLogprob, p));
                }
            }

            if (so.SampledRequestIds.Contains(r.Id))
            {
                logitsRows.Add(row - 1);
                uses.Add(new LogitsRowUse(r.Id, LogitsRowKind.Sample, start + n - 1));
            }

            queryStart[s + 1] = row;
            seqLens[s] = start + n;
        }

        var batch = new ForwardBatch
        {
            TokenIds = tokenIds,
            Positions = positions,
            SlotMapping = slots,
            QueryStartLoc = queryStart,
            SeqLens = seqLens,
            BlockTables = blockTables,
            MaxBlocksPerSeq = maxBlocks,
            LogitsRows = [.. logitsRows],
        };
        return new StepPlan(batch, [.. uses], promptStart, pendingRows);
    }

    /// <summary>Fills the pending rows from the requests' tokens, once the step that sampled them has completed.</summary>
    public void ResolvePendingRows()
    {
        foreach ((int row, RunnerRequest request) in PendingRows)
        {
            Batch.TokenIds[row] = request.TokenIds[Batch.Positions[row]];
        }

        PendingRows.Clear();
    }
}
