using Celer.Engine.Execution;
using Celer.Models.Architectures;
using Celer.Models.Backend;

namespace Celer.Engine.Speculative;

/// <summary>
/// Draft-model speculative decoding (vLLM's <c>draft_model</c> method): a smaller model with the target's vocabulary
/// proposes each request's next tokens greedily, one forward pass per draft position. Greedy drafts are deterministic
/// proposals, so the target's verification (<see cref="Sampler.Verify"/>) keeps its distribution exactly.
/// <para>
/// The draft has its own KV cache laid out like the target's, with as many blocks, and shares the target's block
/// tables, so the scheduler's allocation, preemption and prefix sharing serve both. Each request remembers how far the
/// draft's cache holds its tokens (<see cref="RunnerRequest.DraftComputed"/>). Proposing first catches the draft up
/// on the tokens it has not seen (the whole prompt the first time, else the newly accepted tokens), in passes of at most
/// the model's token budget; the last row of each request gives the first draft; then each further pass feeds every
/// request its latest draft. Drafts are written at the positions after the request's tokens, which the scheduler's
/// lookahead slots cover; those positions hold no cached block (a block is shared only once the target has computed
/// it), and the ones the target accepts count as caught up next time. Catching up over a cached prefix rewrites the
/// same values into shared blocks, which no other request depends on more than this one.
/// </para>
/// </summary>
internal sealed class DraftModelProposer : IDraftProposer, IDisposable
{
    private readonly DecoderModel _model;
    private readonly IModelBackend _backend;
    private readonly IDeviceSampler? _sampler;
    private readonly IDisposable? _weights;
    private readonly int _blockSize;
    private readonly int? _disableByBatchSize;
    private readonly DeviceSamplingRow[] _greedyRows;
    private int[] _ids = [];

    /// <param name="model">The draft on <paramref name="backend"/>, whose KV cache is allocated here with the target's block count.</param>
    /// <param name="sampler">The draft backend's device sampler (its argmax), or null to take the argmax of host logits.</param>
    /// <param name="weights">Owned: the draft's memory-mapped checkpoint (CPU), kept open while the model reads it.</param>
    public DraftModelProposer(
        DecoderModel model, IModelBackend backend, IDeviceSampler? sampler, int numKvBlocks, int blockSize, int k, int? disableByBatchSize, IDisposable? weights)
    {
        _model = model;
        _backend = backend;
        _sampler = sampler;
        _weights = weights;
        _blockSize = blockSize;
        _disableByBatchSize = disableByBatchSize;
        MaxDraftTokens = k;
        _greedyRows = new DeviceSamplingRow[model.MaxLogitsRows];
        Array.Fill(_greedyRows, new DeviceSamplingRow { TopP = 1f });
        backend.AllocateKvCache(model.Config.NumHiddenLayers, numKvBlocks, blockSize, model.Attention);
    }

    public int MaxDraftTokens { get; }

    /// <summary>Records the draft's decode graphs (its steps after the first pass are decodes of one token per request).</summary>
    public IReadOnlyList<int> CaptureGraphs() => _model.CaptureGraphs();

    public bool ProposesFor(int batchSize) => _disableByBatchSize is not { } limit || batchSize < limit;

    public Dictionary<string, int[]> Propose(IReadOnlyList<RunnerRequest> requests, StepPlan step)
    {
        // Each request's room: a draft at position p needs p's slot, and draft i is fed at known − 2 + i.
        var drafting = new List<(RunnerRequest Request, int Count)>(requests.Count);
        foreach (RunnerRequest r in requests)
        {
            int known = r.TokenIds.Count;
            int count = Math.Min(MaxDraftTokens, r.BlockIds.Count * _blockSize - known + 1);
            if (count > 0)
            {
                CatchUpFrom(r);
                drafting.Add((r, count));
            }
        }

        var drafts = new Dictionary<string, int[]>(drafting.Count, StringComparer.Ordinal);
        if (drafting.Count == 0)
        {
            return drafts;
        }

        foreach ((RunnerRequest r, int count) in drafting)
        {
            drafts[r.Id] = new int[count];
        }

        CatchUp(drafting, drafts);
        for (int i = 1; i < MaxDraftTokens; i++)
        {
            var next = drafting.Where(d => d.Count > i).Select(d => d.Request).ToList();
            if (next.Count == 0)
            {
                break;
            }

            DraftStep(next, drafts, i);
        }

        foreach ((RunnerRequest r, int count) in drafting)
        {
            r.DraftComputed = r.TokenIds.Count;
            r.DraftFed = drafts[r.Id][..(count - 1)];
        }

        return drafts;
    }

    /// <summary>
    /// Moves <see cref="RunnerRequest.DraftComputed"/> over the drafts the target accepted (they stand in the draft's
    /// cache already), short of the last token, whose row gives the first draft.
    /// </summary>
    private static void CatchUpFrom(RunnerRequest r)
    {
        int last = r.TokenIds.Count - 1;
        int computed = Math.Min(r.DraftComputed, last);
        // Draft i was fed at DraftComputed + i.
        for (int i = 0; computed == r.DraftComputed + i && i < r.DraftFed.Length && computed < last && r.TokenIds[computed] == r.DraftFed[i]; i++)
        {
            computed++;
        }

        r.DraftComputed = computed;
        r.DraftFed = [];
    }

    /// <summary>
    /// Feeds each request its tokens from <see cref="RunnerRequest.DraftComputed"/> to its last, in passes of at most
    /// the model's token budget and logits rows (a long prompt spans several, in order); each request's last row gives
    /// its first draft.
    /// </summary>
    private void CatchUp(List<(RunnerRequest Request, int Count)> drafting, Dictionary<string, int[]> drafts)
    {
        var pass = new List<(RunnerRequest Request, int From, int To)>();
        int tokens = 0, rows = 0;
        foreach ((RunnerRequest r, _) in drafting)
        {
            int from = r.DraftComputed, end = r.TokenIds.Count;
            while (from < end)
            {
                if (tokens == _model.MaxNumTokens || rows == _model.MaxLogitsRows)
                {
                    Run(pass);
                    pass.Clear();
                    (tokens, rows) = (0, 0);
                }

                int to = Math.Min(end, from + _model.MaxNumTokens - tokens);
                pass.Add((r, from, to));
                tokens += to - from;
                rows += to == end ? 1 : 0;
                from = to;
            }
        }

        Run(pass);

        void Run(List<(RunnerRequest Request, int From, int To)> segments)
        {
            var batch = Batch(segments.Select(s => (s.Request, s.From, s.To, (IReadOnlyList<int>)s.Request.TokenIds.GetRange(s.From, s.To - s.From))).ToList());
            int[] ids = Greedy(batch);
            int row = 0;
            foreach ((RunnerRequest r, _, int to) in segments)
            {
                if (to == r.TokenIds.Count)
                {
                    drafts[r.Id][0] = ids[row++];
                }
            }
        }
    }

    /// <summary>Feeds each request its draft <paramref name="i"/> − 1 at the position after it, which gives draft <paramref name="i"/>.</summary>
    private void DraftStep(List<RunnerRequest> requests, Dictionary<string, int[]> drafts, int i)
    {
        var segments = requests.Select(r =>
        {
            int position = r.TokenIds.Count - 1 + i;
            return (r, position, position + 1, (IReadOnlyList<int>)[drafts[r.Id][i - 1]]);
        }).ToList();
        int[] ids = Greedy(Batch(segments));
        for (int s = 0; s < requests.Count; s++)
        {
            drafts[requests[s].Id][i] = ids[s];
        }
    }

    /// <summary>One forward batch of the segments (tokens at positions [From, To) of each request), a logits row at each segment's end.</summary>
    private ForwardBatch Batch(IReadOnlyList<(RunnerRequest Request, int From, int To, IReadOnlyList<int> Tokens)> segments)
    {
        int numTokens = segments.Sum(s => s.To - s.From);
        int maxBlocks = segments.Max(s => s.Request.BlockIds.Count);
        var tokenIds = new int[numTokens];
        var positions = new int[numTokens];
        var slots = new int[numTokens];
        var queryStart = new int[segments.Count + 1];
        var seqLens = new int[segments.Count];
        var blockTables = new int[segments.Count * maxBlocks];
        var logitsRows = new int[segments.Count];
        int row = 0;
        for (int s = 0; s < segments.Count; s++)
        {
            (RunnerRequest r, int from, int to, IReadOnlyList<int> tokens) = segments[s];
            r.BlockIds.CopyTo(blockTables.AsSpan(s * maxBlocks));
            for (int p = from; p < to; p++, row++)
            {
                tokenIds[row] = tokens[p - from];
                positions[row] = p;
                slots[row] = r.BlockIds[p / _blockSize] * _blockSize + p % _blockSize;
            }

            queryStart[s + 1] = row;
            seqLens[s] = to;
            logitsRows[s] = row - 1;
        }

        return new ForwardBatch
        {
            TokenIds = tokenIds,
            Positions = positions,
            SlotMapping = slots,
            QueryStartLoc = queryStart,
            SeqLens = seqLens,
            BlockTables = blockTables,
            MaxBlocksPerSeq = maxBlocks,
            LogitsRows = logitsRows,
        };
    }

    /// <summary>The argmax of each logits row of the batch (the lowest id among ties, as the device sampler's greedy rows).</summary>
    private int[] Greedy(ForwardBatch batch)
    {
        int rows = batch.LogitsRows.Length;
        if (_ids.Length < rows)
        {
            _ids = new int[_model.MaxLogitsRows];
        }

        if (_sampler is not null)
        {
            Tensor logits = _model.ForwardToDevice(batch);
            _sampler.LaunchSample(logits, _greedyRows.AsSpan(0, rows), [], [], []);
            _sampler.ReadSampled(_ids.AsSpan(0, rows));
            return _ids[..rows];
        }

        int vocab = _model.Config.VocabSize;
        _model.Forward(batch, (first, count, logits) =>
        {
            for (int r = 0; r < count; r++)
            {
                _ids[first + r] = LogitsMath.ArgMax(logits.AsSpan(r * vocab, vocab));
            }
        });
        return _ids[..rows];
    }

    public void Dispose()
    {
        _backend.Dispose();
        _weights?.Dispose();
    }
}
