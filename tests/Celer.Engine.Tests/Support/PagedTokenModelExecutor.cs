using Celer.Engine.KvCache;
using Celer.Engine.Scheduling;
using Celer.Models.Backend;

namespace Celer.Engine.Tests.Support;

/// <summary>
/// A real <see cref="IModelExecutor"/> over a toy model whose KV entry for a position is the
/// token id at that position, kept in a paged slot array addressed through the block table the
/// scheduler hands out, exactly as a GPU runner addresses its KV cache. Each step writes the
/// scheduled tokens into their slots, then "attends" by reading the whole sequence back from the
/// cache, and samples <see cref="NextToken"/> of what it read. A wrong block table, a bad prefix
/// hit or an early eviction therefore changes the generated tokens; a test compares them with
/// <see cref="NextToken"/> applied to the true sequence.
/// <para>
/// With a host tier (<paramref name="numHostKvBlocks"/>) stores copy a block's slots into a host array at once, and a load
/// copies them back only when it finishes, <see cref="LoadLatency"/> calls later (a call with no tokens finishes the
/// oldest at once, as a runner waits for one): until then the device block reads as <see cref="Loading"/>, and a step
/// that schedules a request over it, or a store that reads it, throws. A load reads its host blocks when it finishes,
/// so a store that overwrote one meanwhile (a pin the scheduler forgot) changes the tokens too.
/// </para>
/// </summary>
/// <param name="model">The next token as a function of the sequence read back; <see cref="NextToken"/> by default.</param>
public sealed class PagedTokenModelExecutor(
    int numKvBlocks, int blockSize, int vocabSize, Func<IReadOnlyList<int>, int>? model = null, int numHostKvBlocks = 0) : IModelExecutor
{
    /// <summary>What a device slot holds while a load into its block is running.</summary>
    public const int Loading = -2;

    private readonly Func<IReadOnlyList<int>, int> _model = model ?? (sequence => NextToken(sequence, vocabSize));
    private readonly int[] _slots = Enumerable.Repeat(-1, numKvBlocks * blockSize).ToArray();
    private readonly int[] _hostSlots = Enumerable.Repeat(-1, numHostKvBlocks * blockSize).ToArray();
    private readonly Dictionary<string, RunnerRequestState> _states = [];
    private readonly List<(long LoadId, IReadOnlyList<KvBlockCopy> Blocks, int DueCall)> _loads = [];
    private int _calls;
    private CompletedStep? _inFlight;

    public int NumKvBlocks { get; } = numKvBlocks;
    public int NumHostKvBlocks { get; } = numHostKvBlocks;
    public long HostKvBlockBytes => BlockSize * sizeof(int);

    /// <summary>Calls of <see cref="Execute"/> after the one that queued a load at which it finishes.</summary>
    public int LoadLatency { get; set; } = 2;

    /// <summary>Blocks stored and loaded so far.</summary>
    public int NumStoredBlocks { get; private set; }
    public int NumLoadedBlocks { get; private set; }

    /// <summary>Loads queued and not finished.</summary>
    public int NumLoadsInFlight => _loads.Count;
    public int BlockSize { get; } = blockSize;
    public int VocabSize { get; } = vocabSize;
    public int NumSteps { get; private set; }

    /// <summary>Runs after each sample with the step number: a test can slow a step down or make it fail like a crashing backend.</summary>
    public Action<int>? AfterSample { get; set; }
    public bool Disposed { get; private set; }
    public List<SchedulerOutput> History { get; } = [];

    /// <summary>Requests whose state the runner holds (dropped when the scheduler reports them finished).</summary>
    public IReadOnlyCollection<string> CachedRequestIds => _states.Keys;

    /// <summary>The toy model: an FNV-1a hash of the sequence, folded into the vocabulary.</summary>
    public static int NextToken(IEnumerable<int> sequence, int vocabSize)
    {
        ulong h = 14695981039346656037UL;
        foreach (int t in sequence)
        {
            h = (h ^ (uint)t) * 1099511628211UL;
        }
        return (int)(h % (ulong)vocabSize);
    }

    /// <summary>The plain reference: what the model generates from a prompt when nothing goes wrong.</summary>
    public static List<int> ReferenceGeneration(IReadOnlyList<int> prompt, int numTokens, int vocabSize)
    {
        var sequence = new List<int>(prompt);
        for (int i = 0; i < numTokens; i++)
        {
            sequence.Add(NextToken(sequence, vocabSize));
        }
        return sequence.GetRange(prompt.Count, numTokens);
    }

    public bool SupportsAsyncScheduling => true;

    /// <summary>Whether a submitted step is held back, its output returned by the next call (async scheduling).</summary>
    public bool HasStepInFlight => _inFlight is not null;

    /// <summary>
    /// Async scheduling as a device runner does it: the step is computed now (its sampled tokens are the runner's own
    /// from then on, which the next step may feed), but its output is held back until the next call, so the
    /// scheduler schedules that call's step with this step's tokens still as placeholders.
    /// </summary>
    public void Submit(SchedulerOutput schedulerOutput, List<CompletedStep> completed)
    {
        var step = new CompletedStep(schedulerOutput, Execute(schedulerOutput));
        if (_inFlight is { } previous)
        {
            completed.Add(previous);
        }

        _inFlight = null;
        if (schedulerOutput.IsEmpty)
        {
            completed.Add(step);
        }
        else
        {
            _inFlight = step;
        }
    }

    public ModelRunnerOutput Execute(SchedulerOutput schedulerOutput)
    {
        NumSteps++;
        _calls++;
        History.Add(schedulerOutput);
        foreach (KvBlockCopy store in schedulerOutput.KvTransfers.Stores)
        {
            if (_slots[store.DeviceBlock * BlockSize] == Loading)
            {
                throw new InvalidOperationException($"Block {store.DeviceBlock} was stored while a load into it was running.");
            }
            Array.Copy(_slots, store.DeviceBlock * BlockSize, _hostSlots, store.HostBlock * BlockSize, BlockSize);
            NumStoredBlocks++;
        }
        foreach (KvLoad load in schedulerOutput.KvTransfers.Loads)
        {
            foreach (KvBlockCopy copy in load.Blocks)
            {
                Array.Fill(_slots, Loading, copy.DeviceBlock * BlockSize, BlockSize);
            }
            _loads.Add((load.LoadId, load.Blocks, _calls + LoadLatency));
        }
        foreach (string id in schedulerOutput.FinishedRequestIds)
        {
            _states.Remove(id);
        }
        foreach (string id in schedulerOutput.PreemptedRequestIds)
        {
            // The prompt stays known; the blocks are gone until the request resumes.
            _states[id].BlockIds.Clear();
        }
        foreach (NewRequestData r in schedulerOutput.ScheduledNewRequests)
        {
            _states.Add(r.RequestId, new RunnerRequestState([.. r.PromptTokenIds], [.. r.BlockIds], r.NumComputedTokens, r.PromptTokenIds.Count));
        }
        foreach (CachedRequestData r in schedulerOutput.ScheduledCachedRequests)
        {
            if (r.ResumedFromPreemption)
            {
                RunnerRequestState old = _states[r.RequestId];
                _states[r.RequestId] = new RunnerRequestState([.. old.Tokens.Take(old.NumPromptTokens), .. r.NewTokenIds], [.. r.NewBlockIds], r.NumComputedTokens, old.NumPromptTokens);
                continue;
            }
            RunnerRequestState state = _states[r.RequestId];
            state.Tokens.AddRange(r.NewTokenIds);
            state.BlockIds.AddRange(r.NewBlockIds);
            if (state.NumComputedTokens != r.NumComputedTokens)
            {
                throw new InvalidOperationException($"{r.RequestId}: runner computed {state.NumComputedTokens}, scheduler says {r.NumComputedTokens}.");
            }
        }

        var sampled = new Dictionary<string, IReadOnlyList<int>>();
        foreach ((string id, int numTokens) in schedulerOutput.NumScheduledTokens)
        {
            RunnerRequestState state = _states[id];
            int end = state.NumComputedTokens + numTokens;
            foreach (int blockId in state.BlockIds)
            {
                if (_slots[blockId * BlockSize] == Loading)
                {
                    throw new InvalidOperationException($"{id} was scheduled while block {blockId} of its table was still loading.");
                }
            }
            if (end > state.Tokens.Count)
            {
                throw new InvalidOperationException($"{id}: scheduled up to position {end} but only {state.Tokens.Count} tokens are known.");
            }
            for (int pos = state.NumComputedTokens; pos < end; pos++)
            {
                _slots[Slot(state, pos)] = state.Tokens[pos];
            }
            state.NumComputedTokens = end;
            if (schedulerOutput.SampledRequestIds.Contains(id))
            {
                // Attention over the cache: read every position back through the block table.
                var seen = new int[end];
                for (int pos = 0; pos < end; pos++)
                {
                    seen[pos] = _slots[Slot(state, pos)];
                }
                int token = _model(seen);
                sampled[id] = [token];
                state.Tokens.Add(token);   // the runner keeps its own samples; the scheduler sends none back
                AfterSample?.Invoke(NumSteps);
            }
        }
        return new ModelRunnerOutput(sampled) { FinishedKvLoads = FinishLoads(waitForOne: schedulerOutput.IsEmpty) };
    }

    /// <summary>Copies back the loads that are due (with <paramref name="waitForOne"/>, at least the oldest) and names them.</summary>
    private List<long> FinishLoads(bool waitForOne)
    {
        var finished = new List<long>();
        while (_loads.Count > 0 && (_loads[0].DueCall <= _calls || (waitForOne && finished.Count == 0)))
        {
            foreach (KvBlockCopy copy in _loads[0].Blocks)
            {
                Array.Copy(_hostSlots, copy.HostBlock * BlockSize, _slots, copy.DeviceBlock * BlockSize, BlockSize);
                NumLoadedBlocks++;
            }
            finished.Add(_loads[0].LoadId);
            _loads.RemoveAt(0);
        }
        return finished;
    }

    public void Dispose() => Disposed = true;

    private int Slot(RunnerRequestState state, int position)
    {
        int blockId = state.BlockIds[position / BlockSize];
        if (blockId == 0)
        {
            throw new InvalidOperationException("The null block was used for real tokens.");
        }
        return (blockId * BlockSize) + (position % BlockSize);
    }

    private sealed class RunnerRequestState(List<int> tokens, List<int> blockIds, int numComputedTokens, int numPromptTokens)
    {
        public int NumPromptTokens { get; } = numPromptTokens;
        public List<int> Tokens { get; } = tokens;
        public List<int> BlockIds { get; } = blockIds;
        public int NumComputedTokens { get; set; } = numComputedTokens;
    }
}
