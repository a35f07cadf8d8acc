using Celer.Engine.Execution;
using Celer.Models.Architectures;
using Celer.Models.Backend;

namespace Celer.Engine.Speculative;

/// <summary>
/// EAGLE speculative decoding (vLLM's <c>eagle</c> and <c>eagle3</c> methods): an <see cref="EagleHead"/> drafts each
/// request's next tokens greedily from the target's own hidden states, one head pass per draft.
/// <para>
/// After every target step the head's first pass runs over the step's rows, each fed the target's hidden state there
/// and the token after it, so the head's one-layer KV cache (laid out like the target's, over the same block tables)
/// follows the target position for position, drafting or not. Rows with no known next token (the positions of drafts
/// the target rejected) write nothing. A drafting request's last row guesses its first draft; each further pass feeds
/// the head its own output and guess at the next position, which the scheduler's lookahead slots cover. A shared
/// prefix block's head entries are the ones the request that first computed it wrote: the last entry of a block saw
/// that request's next token, which only changes how good the drafts are, never what the target accepts.
/// </para>
/// </summary>
internal sealed class EagleProposer : IDraftProposer, IDisposable
{
    private readonly EagleHead _head;
    private readonly IModelBackend _backend;
    private readonly Tensor _targetHidden;
    private readonly IDeviceSampler? _sampler;
    private readonly IDisposable? _weights;
    private readonly int _blockSize;
    private readonly int? _disableByBatchSize;
    private readonly DeviceSamplingRow[] _greedyRows;
    private readonly int[] _ids;
    private float[] _hostLogits = [];

    /// <param name="head">The head on <paramref name="backend"/>, whose KV cache is allocated here with the target's block count.</param>
    /// <param name="targetHidden">The target's captured hidden states (<see cref="DecoderModel.CaptureHiddenStates"/>), which every target step refills.</param>
    /// <param name="sampler">The head backend's device sampler (its argmax), or null to take the argmax of host logits.</param>
    /// <param name="weights">Owned: the head's memory-mapped checkpoint (CPU), kept open while the head reads it.</param>
    public EagleProposer(
        EagleHead head, IModelBackend backend, Tensor targetHidden, IDeviceSampler? sampler, int numKvBlocks, int blockSize, int k, int? disableByBatchSize,
        IDisposable? weights)
    {
        _head = head;
        _backend = backend;
        _targetHidden = targetHidden;
        _sampler = sampler;
        _weights = weights;
        _blockSize = blockSize;
        _disableByBatchSize = disableByBatchSize;
        MaxDraftTokens = k;
        _greedyRows = new DeviceSamplingRow[head.MaxLogitsRows];
        Array.Fill(_greedyRows, new DeviceSamplingRow { TopP = 1f });
        _ids = new int[head.MaxLogitsRows];
        backend.AllocateKvCache(1, numKvBlocks, blockSize, head.Attention);
    }

    public int MaxDraftTokens { get; }

    /// <summary>Records the head's graphs of its chained passes, which run only where the device sampler feeds them.</summary>
    public IReadOnlyList<int> CaptureGraphs() => _sampler is null ? [] : _head.CaptureGraphs();

    public bool ProposesFor(int batchSize) => _disableByBatchSize is not { } limit || batchSize < limit;

    public Dictionary<string, int[]> Propose(IReadOnlyList<RunnerRequest> requests, StepPlan step)
    {
        var drafting = new List<(RunnerRequest Request, int Count)>(requests.Count);
        var wanted = new HashSet<RunnerRequest>(requests);
        ForwardBatch first = FirstPass(step, wanted, drafting);
        var drafts = new Dictionary<string, int[]>(drafting.Count, StringComparer.Ordinal);
        foreach ((RunnerRequest r, int count) in drafting)
        {
            drafts[r.Id] = new int[count];
        }

        Tensor logits = _head.ForwardFromTarget(first, _targetHidden);
        int n = drafting.Count;
        if (n == 0)
        {
            return drafts;   // the pass only filled the head's cache
        }

        int longest = drafting.Max(d => d.Count);
        if (_sampler is null)
        {
            Record(drafting, drafts, 0, HostGreedy(logits, n));
            for (int i = 1; i < longest; i++)
            {
                Record(drafting, drafts, i, HostGreedy(_head.ForwardChained(ChainedPass(drafting, drafts, i)), n));
            }

            return drafts;
        }

        // On the device each pass is queued before the ids of the pass before are read: its tokens are gathered from the
        // sampler's output on the device (draft row d continues sample row d), and the host waits for the ids while the
        // GPU runs the next pass.
        _sampler.LaunchSample(logits, _greedyRows.AsSpan(0, n), [], [], []);
        var pending = new int[2 * n];
        for (int d = 0; d < n; d++)
        {
            (pending[2 * d], pending[2 * d + 1]) = (d, d);
        }

        for (int i = 1; i < longest; i++)
        {
            logits = _head.ForwardChained(ChainedPass(drafting, null, i) with { PendingTokens = pending }, draftIds: true);
            Record(drafting, drafts, i - 1, ReadDeviceGreedy(n));
            _sampler.LaunchSample(logits, _greedyRows.AsSpan(0, n), [], [], []);
        }

        Record(drafting, drafts, longest - 1, ReadDeviceGreedy(n));
        return drafts;
    }

    /// <summary>Pass <paramref name="i"/>'s guesses into the drafts of the requests that draft that many.</summary>
    private static void Record(List<(RunnerRequest Request, int Count)> drafting, Dictionary<string, int[]> drafts, int i, int[] guesses)
    {
        for (int d = 0; d < drafting.Count; d++)
        {
            if (i < drafting[d].Count)
            {
                drafts[drafting[d].Request.Id][i] = guesses[d];
            }
        }
    }

    /// <summary>
    /// The target step's rows, each with the token that follows its position (slot −1 where none is known yet), and a
    /// logits row at the last row of each request that drafts: its second-to-last token's, which guesses the token after
    /// its last. A request drafts as many tokens as its blocks hold past its last one (the last pass writes at position
    /// known + count − 3).
    /// </summary>
    private ForwardBatch FirstPass(StepPlan step, HashSet<RunnerRequest> wanted, List<(RunnerRequest Request, int Count)> drafting)
    {
        ForwardBatch target = step.Batch;
        var tokenIds = new int[target.NumTokens];
        var slots = new int[target.NumTokens];
        var logitsRows = new List<int>(wanted.Count);
        for (int s = 0; s < step.Sequences.Length; s++)
        {
            RunnerRequest r = step.Sequences[s];
            int known = r.TokenIds.Count, last = -1;
            for (int row = target.QueryStartLoc[s]; row < target.QueryStartLoc[s + 1]; row++)
            {
                int next = target.Positions[row] + 1;
                bool valid = next < known;
                tokenIds[row] = valid ? r.TokenIds[next] : 0;
                slots[row] = valid ? target.SlotMapping[row] : -1;
                last = valid ? row : last;
            }

            int count = Math.Min(MaxDraftTokens, r.BlockIds.Count * _blockSize - known + 1);
            if (wanted.Contains(r) && last >= 0 && target.Positions[last] == known - 2 && count > 0)
            {
                logitsRows.Add(last);
                drafting.Add((r, count));
            }
        }

        return target with { TokenIds = tokenIds, SlotMapping = slots, LogitsRows = [.. logitsRows], PendingTokens = [] };
    }

    /// <summary>
    /// Draft pass <paramref name="i"/>: each drafting request's draft i − 1 at position known − 2 + i, continuing its row
    /// of the pass before (its token from <paramref name="drafts"/>, or null when the device fills it in). A request with
    /// fewer drafts keeps its row (the head's rows go in step) at a position its blocks hold, writing nothing, and its
    /// guess is dropped.
    /// </summary>
    private ForwardBatch ChainedPass(List<(RunnerRequest Request, int Count)> drafting, Dictionary<string, int[]>? drafts, int i)
    {
        int n = drafting.Count;
        int maxBlocks = drafting.Max(d => d.Request.BlockIds.Count);
        var tokenIds = new int[n];
        var positions = new int[n];
        var slots = new int[n];
        var seqLens = new int[n];
        var blockTables = new int[n * maxBlocks];
        for (int d = 0; d < n; d++)
        {
            (RunnerRequest r, int count) = drafting[d];
            int capacity = r.BlockIds.Count * _blockSize;
            int position = Math.Min(r.TokenIds.Count - 2 + i, capacity - 1);
            bool live = i < count;
            tokenIds[d] = live && drafts is not null ? drafts[r.Id][i - 1] : 0;
            positions[d] = position;
            slots[d] = live ? r.BlockIds[position / _blockSize] * _blockSize + position % _blockSize : -1;
            seqLens[d] = position + 1;
            r.BlockIds.CopyTo(blockTables.AsSpan(d * maxBlocks));
        }

        return new ForwardBatch
        {
            TokenIds = tokenIds,
            Positions = positions,
            SlotMapping = slots,
            QueryStartLoc = [.. Enumerable.Range(0, n + 1)],
            SeqLens = seqLens,
            BlockTables = blockTables,
            MaxBlocksPerSeq = maxBlocks,
            LogitsRows = [.. Enumerable.Range(0, n)],
        };
    }

    /// <summary>The target ids of the argmax of the first <paramref name="rows"/> host logits rows (the lowest id among ties).</summary>
    private int[] HostGreedy(Tensor logits, int rows)
    {
        int width = _head.LogitsWidth;
        if (_hostLogits.Length < rows * width)
        {
            _hostLogits = new float[_head.MaxLogitsRows * width];
        }

        _backend.CopyToHost(logits, rows, _hostLogits.AsSpan(0, rows * width));
        for (int r = 0; r < rows; r++)
        {
            _ids[r] = LogitsMath.ArgMax(_hostLogits.AsSpan(r * width, width));
        }

        return ToTarget(rows);
    }

    /// <summary>The target ids of the device sampler's last argmax launch (the lowest id among ties, as the host's).</summary>
    private int[] ReadDeviceGreedy(int rows)
    {
        _sampler!.ReadSampled(_ids.AsSpan(0, rows));
        return ToTarget(rows);
    }

    /// <summary>The first <paramref name="rows"/> ids read, mapped from the draft vocabulary to the target's.</summary>
    private int[] ToTarget(int rows)
    {
        int[] ids = _ids[..rows];
        if (_head.DraftToTarget is { } map)
        {
            for (int r = 0; r < rows; r++)
            {
                ids[r] = map[ids[r]];
            }
        }

        return ids;
    }

    public void Dispose()
    {
        _backend.Dispose();
        _weights?.Dispose();
    }
}
