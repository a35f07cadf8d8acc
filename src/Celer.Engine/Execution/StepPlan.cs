using Celer.Engine.Scheduling;
using Celer.Models.Backend;

namespace Celer.Engine.Execution;

internal enum LogitsRowKind
{
    /// <summary>The last row of a sequence whose scheduled tokens reach its end: sample the next token.</summary>
    Sample,

    /// <summary>A prompt row whose logits give the logprob of the next prompt token.</summary>
    PromptLogprob,

    /// <summary>
    /// Speculative decoding: a row whose logits verify the draft token at the next position (the request's last known
    /// token, or one of its drafts but the last); the request's <see cref="Sample"/> row follows its verify rows.
    /// </summary>
    Verify,

    /// <summary>A pooling model's row whose final hidden state its request's pooling reads (no logits).</summary>
    Pool,
}

/// <summary>What one logits row is for: which request, and which position of it; a verify row's draft token.</summary>
internal readonly record struct LogitsRowUse(string RequestId, LogitsRowKind Kind, int Position, int DraftTokenId = -1);

/// <summary>Rows [Row, Row + Count) of a step read features [FirstFeature, FirstFeature + Count) of an image.</summary>
internal readonly record struct ImageSlice(Multimodal.PromptImage Image, int FirstFeature, int Row, int Count);

/// <summary>One step's flat batch plus what each logits row is for.</summary>
internal sealed class StepPlan
{
    private StepPlan(
        ForwardBatch batch, RunnerRequest[] sequences, LogitsRowUse[] uses, Dictionary<string, int> promptLogprobsStart, List<(int Row, RunnerRequest Request)> pendingRows,
        List<ImageSlice> images)
    {
        Batch = batch;
        Images = images;
        Sequences = sequences;
        Uses = uses;
        PromptLogprobsStart = promptLogprobsStart;
        PendingRows = pendingRows;
    }

    public ForwardBatch Batch { get; }

    /// <summary>The request of each of the batch's sequences, in order (its rows are QueryStartLoc[s] .. QueryStartLoc[s + 1]).</summary>
    public RunnerRequest[] Sequences { get; }

    /// <summary>
    /// Rows whose token the step still running samples (async scheduling): past the request's known tokens, with a
    /// placeholder in the batch until <see cref="ResolvePendingRows"/> or the device fills it in.
    /// </summary>
    public List<(int Row, RunnerRequest Request)> PendingRows { get; }

    public LogitsRowUse[] Uses { get; }

    /// <summary>The step's rows that read image features (<see cref="ForwardBatch.ExternalEmbeddingRows"/>), with their images.</summary>
    public List<ImageSlice> Images { get; }

    /// <summary>Per request with prompt logprobs this step: the prompt position of its first entry.</summary>
    public Dictionary<string, int> PromptLogprobsStart { get; }

    /// <param name="pooling">A pooling model's pooling type: its requests get <see cref="LogitsRowKind.Pool"/> rows instead of samples.</param>
    /// <param name="imageEmbeddings">A vision-language model's buffer of the step's image rows (row r for batch row r), which the runner fills.</param>
    public static StepPlan Build(
        SchedulerOutput so, IReadOnlyDictionary<string, RunnerRequest> requests, int blockSize, PoolingType? pooling = null, Tensor? imageEmbeddings = null)
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
        var images = new List<ImageSlice>();
        // An encoder's pair inputs (cross-encoders) have token types; a step without any sends none (all 0).
        int[]? tokenTypes = null;

        int row = 0;
        for (int s = 0; s < ids.Count; s++)
        {
            RunnerRequest r = requests[ids[s]];
            int n = so.NumScheduledTokens[r.Id];
            int start = r.NumComputedTokens;
            int[] drafts = so.ScheduledSpecTokens.GetValueOrDefault(r.Id) ?? [];
            int known = r.TokenIds.Count;   // drafts stand at positions known, known + 1, …
            r.BlockIds.CopyTo(blockTables.AsSpan(s * maxBlocks));
            int? promptLogprobs = r.Sampling.Params.PromptLogprobs;
            foreach (Multimodal.PromptImage image in r.Images)
            {
                int first = Math.Max(start, image.Offset), end = Math.Min(start + n, image.End);
                if (first < end)
                {
                    images.Add(new ImageSlice(image, first - image.Offset, row + first - start, end - first));
                }
            }

            for (int p = start; p < start + n; p++, row++)
            {
                if (p < known)
                {
                    tokenIds[row] = r.TokenIds[p];
                }
                else if (p - known < drafts.Length)
                {
                    tokenIds[row] = drafts[p - known];
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

            if (r.Pooling?.Params.TokenTypeIds is { } types)
            {
                tokenTypes ??= new int[numTokens];
                for (int p = start; p < start + n; p++)
                {
                    tokenTypes[row - (start + n - p)] = types[p];
                }
            }

            if (pooling is { } type)
            {
                // Mean and max pooling read every row, CLS the first position's, last-token pooling the prompt's last.
                for (int p = start; p < start + n; p++)
                {
                    if (type is PoolingType.Mean or PoolingType.Max || (type == PoolingType.Cls && p == 0) || (type == PoolingType.Last && p == r.TokenIds.Count - 1))
                    {
                        logitsRows.Add(row - (start + n - p));
                        uses.Add(new LogitsRowUse(r.Id, LogitsRowKind.Pool, p));
                    }
                }
            }
            else if (so.SampledRequestIds.Contains(r.Id))
            {
                // Row p predicts token p + 1: the rows before the drafts' positions verify them, the last one samples.
                for (int i = 0; i < drafts.Length; i++)
                {
                    logitsRows.Add(row - 1 - drafts.Length + i);
                    uses.Add(new LogitsRowUse(r.Id, LogitsRowKind.Verify, known - 1 + i, drafts[i]));
                }

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
            TokenTypeIds = tokenTypes,
            ExternalEmbeddings = images.Count > 0 ? imageEmbeddings ?? throw new InvalidOperationException("A step reads image features, and this model has no image encoder.") : null,
            ExternalEmbeddingRows = [.. images.SelectMany(i => new[] { i.Row, i.Count })],
        };
        return new StepPlan(batch, [.. ids.Select(id => requests[id])], [.. uses], promptStart, pendingRows, images);
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
