using Celer.Engine.Multimodal;
using Celer.Engine.Scheduling;
using Celer.Engine.Speculative;
using Celer.Models.Architectures;
using Celer.Models.Backend;
using Celer.Models.Multimodal;

namespace Celer.Engine.Execution;

/// <summary>
/// The executor of one model on one backend (vLLM's <c>GPUModelRunner</c>): keeps each request's tokens, block
/// table and sampler state across steps, turns a <see cref="SchedulerOutput"/> into one flat <see cref="ForwardBatch"/>
/// (prefill chunks and decodes mixed), asks the model for logits only on the rows that need them (the last row of a
/// sequence that samples this step; prompt rows when prompt logprobs are wanted; with speculative decoding the rows
/// that verify a request's drafts), samples, and proposes the next drafts.
/// </summary>
public sealed partial class ModelRunner : IModelExecutor
{
    private readonly IPoolingModel _model;      // every model; a pooling model runs only through this interface
    private readonly DecoderModel? _decoder;       // a generative model's own interface (null for an encoder)
    private readonly IModelBackend _backend;
    private readonly int _blockSize;
    private readonly IReadOnlyCollection<int> _eosTokenIds;
    private readonly SeedSource _seeds;
    private readonly IDeviceSampler? _deviceSampler;
    private readonly DeviceSamplingBatch _deviceBatch = new();
    private readonly IDisposable? _weights;
    private readonly IDraftProposer? _proposer;
    private readonly PoolerConfig? _pooler;
    private readonly Dictionary<string, RunnerRequest> _requests = new(StringComparer.Ordinal);
    private readonly ImageFeatureWriter? _images;   // a vision-language model's image side

    // Host-tier loads queued on the backend, oldest first (they finish in order), and those found finished but not yet
    // reported in an output.
    private readonly Queue<(long Fence, long LoadId)> _loadsInFlight = new();
    private readonly List<long> _finishedLoads = [];

    // Host work per request (sampling logits, pooling hidden rows) over fewer values than this stays on the engine thread:
    // handing rows to the thread pool costs more.
    private const long ParallelHostElements = 1 << 20;

    // Async scheduling: the step left running (its forward pass and sampling queued on the device), and, when the
    // host samples, the ids it drew for it. A pooling model's step leaves its rows on their way to a host slot.
    private (SchedulerOutput Output, StepPlan Plan, int PoolSlot)? _inFlight;
    private int _poolSlot;   // the host slot the next pooling step's rows go to; the other holds the step before
    private int[] _hostTokens = [];
    private float[] _hostLogits = [];

    /// <param name="weights">Owned: the memory-mapped checkpoint the CPU backend reads weights from in place.</param>
    /// <param name="deviceSampler">
    /// Samples on the device (reserved for the model's logits rows): steps that only sample never copy logits to the
    /// host. Null: every row is sampled on the host.
    /// </param>
    /// <param name="proposer">Speculative decoding (<c>--speculative-config</c>): drafts each sampled request's next tokens (owned).</param>
    /// <param name="pooler">A pooling model's pooler: every request is pooled from its prompt's hidden states, none sampled.</param>
    /// <param name="numHostKvBlocks">Blocks of the host KV tier to allocate (<c>--kv-offload-size</c>); 0: none.</param>
    /// <param name="imageEncoder">A vision-language model's image side (owned): steps whose rows hold image placeholders read its features there.</param>
    /// <param name="reloadWeights">
    /// Sleep mode (<c>--enable-sleep-mode</c>; the backend is an <see cref="ISleepMode"/>): loads the model's weights again
    /// after a level-2 sleep. Null: no sleep mode.
    /// </param>
    internal ModelRunner(
        IPoolingModel model, IModelBackend backend, int numKvBlocks, int blockSize, IReadOnlyCollection<int> eosTokenIds, long seed,
        IDisposable? weights = null, IDeviceSampler? deviceSampler = null, IDraftProposer? proposer = null, PoolerConfig? pooler = null,
        int numHostKvBlocks = 0, Action? reloadWeights = null, IImageEncoder? imageEncoder = null)
    {
        if (reloadWeights is not null && (backend is not ISleepMode || proposer is DraftModelProposer or EagleProposer))
        {
            throw new ArgumentException("Sleep mode needs a backend that releases its memory, and no draft model or head.", nameof(reloadWeights));
        }

        _reloadWeights = reloadWeights;
        _pooler = pooler;
        _deviceSampler = deviceSampler;
        _proposer = proposer;
        _weights = weights;
        _model = model;
        _decoder = model as DecoderModel;
        if (_decoder is null && pooler is null)
        {
            throw new ArgumentException($"{model.Config.Architecture} runs as a pooling model only.", nameof(model));
        }

        _backend = backend;
        _images = imageEncoder is null ? null : new ImageFeatureWriter(imageEncoder, backend, Decoder.MaxNumTokens, model.Config.HiddenSize);
        NumKvBlocks = numKvBlocks;
        _blockSize = blockSize;
        _eosTokenIds = eosTokenIds;
        _seeds = new SeedSource(seed);
        backend.AllocateKvCache(model.Config.NumHiddenLayers, numKvBlocks, blockSize, model.Attention);
        if (numHostKvBlocks > 0)
        {
            backend.AllocateHostKvCache(numHostKvBlocks);
            NumHostKvBlocks = numHostKvBlocks;
            HostKvBlockBytes = backend.KvBlockBytes(model.Config.NumHiddenLayers, blockSize, model.Attention.NumKvHeads, model.Attention.HeadDim);
        }
    }

    public int NumKvBlocks { get; }

    public int NumHostKvBlocks { get; }

    public long HostKvBlockBytes { get; }

    private DecoderModel Decoder => _decoder ?? throw new InvalidOperationException("An encoder computes no logits.");

    public void WatchFailures(Action<Exception> onFailure) => _decoder?.Peers?.WatchFailures(onFailure);

    public StepTimeline? Timeline => _backend.Timeline;

    /// <summary>Not with speculative decoding: a step's drafts come from the tokens the step before it sampled.</summary>
    // A step left running feeds the next the tokens its device sampler drew; tensor-parallel workers embed their own copy
    // of each step's tokens and never see those, so with peers every step ends before the next is built. A pooling step
    // feeds the next nothing: only its rows' trip to the host is left running.
    public bool SupportsAsyncScheduling => _proposer is null && _decoder?.Peers is null;

    /// <summary>
    /// Steps overlap the host's work when the device samples them (the host sampler needs the logits first), or when a
    /// pooling model's steps run on a device that queues them.
    /// </summary>
    public bool OverlapsSteps => SupportsAsyncScheduling && (_deviceSampler is not null || (_pooler is not null && _backend.QueuesWork));

    public ModelRunnerOutput Execute(SchedulerOutput schedulerOutput)
    {
        if (_inFlight is not null)
        {
            throw new InvalidOperationException("A step is still running: with async scheduling every step goes through Submit.");
        }

        UpdateStates(schedulerOutput);
        QueueTransfers(schedulerOutput);
        ModelRunnerOutput output = schedulerOutput.IsEmpty ? ModelRunnerOutput.Empty
            : _pooler is not null ? Pool(schedulerOutput, LaunchPooling(schedulerOutput))
            : RunWithDrafts(PlanStep(schedulerOutput));
        return WithFinishedLoads(output, waitForOne: schedulerOutput.IsEmpty);
    }

    /// <summary>
    /// Queues the step's host-tier copies before its forward pass: the stores (the backend orders this step's writes after
    /// them), then the loads, remembered until the backend says they are done.
    /// </summary>
    private void QueueTransfers(SchedulerOutput so)
    {
        KvCache.KvTransfers transfers = so.KvTransfers;
        if (transfers.IsEmpty)
        {
            return;
        }

        _backend.StoreKvBlocks([.. transfers.Stores]);
        foreach (KvCache.KvLoad load in transfers.Loads)
        {
            _loadsInFlight.Enqueue((_backend.LoadKvBlocks([.. load.Blocks]), load.LoadId));
        }
    }

    /// <summary>
    /// The output with the loads finished so far; with <paramref name="waitForOne"/> (a step that computed nothing) it
    /// first waits for the oldest load in flight, unless one finished already.
    /// </summary>
    private ModelRunnerOutput WithFinishedLoads(ModelRunnerOutput output, bool waitForOne)
    {
        while (_loadsInFlight.TryPeek(out (long Fence, long LoadId) oldest)
            && _backend.KvLoadsDone(oldest.Fence, wait: waitForOne && _finishedLoads.Count == 0))
        {
            _finishedLoads.Add(_loadsInFlight.Dequeue().LoadId);
        }

        if (_finishedLoads.Count == 0)
        {
            return output;
        }

        output = output with { FinishedKvLoads = [.. _finishedLoads] };
        _finishedLoads.Clear();
        return output;
    }

    /// <summary>A generation step's plan, with its image rows' features queued into place.</summary>
    private StepPlan PlanStep(SchedulerOutput so)
    {
        StepPlan plan = StepPlan.Build(so, _requests, _blockSize, imageEmbeddings: _images?.Buffer);
        if (plan.Images.Count > 0)
        {
            _images!.Write(plan.Images);
        }

        return plan;
    }

    /// <summary>Queues a pooling model's step, its rows on their way to the next host slot; <see cref="Pool"/> reads them.</summary>
    private (StepPlan Plan, int Slot) LaunchPooling(SchedulerOutput so)
    {
        var plan = StepPlan.Build(so, _requests, _blockSize, _pooler!.Type);
        int slot = _poolSlot;
        _poolSlot ^= 1;
        // Prompt chunks of CLS or last-token pooling that read no row still fill the KV cache.
        _model.ForwardHidden(plan.Batch, slot);
        return (plan, slot);
    }

    /// <summary>
    /// A pooling model's step once its rows are on the host: the rows each request's pooling reads are added to its
    /// state, and the requests whose prompt this step completes get their vectors (and end). A request finished or
    /// aborted while the step ran is gone; its rows are dropped. Requests are independent, so a step of many rows (mean
    /// or max pooling reads every row: 32k rows of a 32k-token step) pools them in parallel, and a step that finishes
    /// many requests runs their Dense modules or classifier heads in parallel; the host's pooling then stays within the
    /// next step's time on the GPU.
    /// </summary>
    private unsafe ModelRunnerOutput Pool(SchedulerOutput so, (StepPlan Plan, int Slot) step)
    {
        int hidden = _model.Config.HiddenSize, count = step.Plan.Uses.Length;
        List<(int Start, int End)> runs = RequestRuns(step.Plan.Uses, 0, count);
        // A GPU's host slot is pinned memory, the CPU's a managed array: fixed keeps either where it is while the workers read it.
        fixed (float* pinned = _model.ReadHidden(step.Slot, count))
        {
            nint first = (nint)pinned;
            void AddRun(int start, int end)
            {
                if (_requests.TryGetValue(step.Plan.Uses[start].RequestId, out RunnerRequest? request))
                {
                    request.Pooling!.AddRows(new ReadOnlySpan<float>((float*)first + ((long)start * hidden), (end - start) * hidden), hidden);
                }
            }

            if ((long)count * hidden >= ParallelHostElements)
            {
                Parallel.ForEach(runs, run => AddRun(run.Start, run.End));
            }
            else
            {
                runs.ForEach(run => AddRun(run.Start, run.End));
            }
        }

        RunnerRequest[] finished = [.. so.SampledRequestIds.Select(id => _requests.GetValueOrDefault(id)).OfType<RunnerRequest>()];
        var vectors = new float[finished.Length][];
        if (finished.Length > 1 && (_pooler!.Dense.Count > 0 || _model.Classifier is not null))
        {
            Parallel.For(0, finished.Length, i => vectors[i] = finished[i].Pooling!.Finish(_model.Classifier));
        }
        else
        {
            for (int i = 0; i < finished.Length; i++)
            {
                vectors[i] = finished[i].Pooling!.Finish(_model.Classifier);
            }
        }

        var pooled = new Dictionary<string, float[]>(finished.Length, StringComparer.Ordinal);
        for (int i = 0; i < finished.Length; i++)
        {
            pooled[finished[i].Id] = vectors[i];
        }

        return new ModelRunnerOutput(new Dictionary<string, IReadOnlyList<int>>(), PoolerOutputs: pooled);
    }

    /// <summary>Runs a step; with speculative decoding each request that sampled gets the drafts that may follow its new tokens.</summary>
    private ModelRunnerOutput RunWithDrafts(StepPlan plan)
    {
        ModelRunnerOutput output = Run(plan);
        if (_proposer is null)
        {
            return output;
        }

        // A step too large to draft for still goes to the proposer, which may follow every step (an EAGLE head's cache).
        IReadOnlyList<RunnerRequest> drafting = _proposer.ProposesFor(output.SampledTokenIds.Count)
            ? [.. output.SampledTokenIds.Keys.Select(id => _requests[id])]
            : [];
        Dictionary<string, int[]> drafts = _proposer.Propose(drafting, plan);
        return drafting.Count == 0 ? output : output with { DraftTokenIds = drafts };
    }

    /// <summary>
    /// Async scheduling. A step that only samples (no logprobs, which read logits the next step overwrites) is left
    /// running: its forward pass is queued first, with tokens the running step has not returned yet gathered on the
    /// device; then the running step's ids are read (it finished while the new forward pass was queued) and its
    /// tokens recorded, which the new step's sampling needs (penalties, min_tokens, the seeded draw order); then the
    /// new step's sampling is queued. Other steps complete the running step first and run to their end.
    /// </summary>
    public void Submit(SchedulerOutput schedulerOutput, List<CompletedStep> completed)
    {
        UpdateStates(schedulerOutput);
        QueueTransfers(schedulerOutput);
        if (schedulerOutput.IsEmpty)
        {
            CompleteInFlight(completed);
            completed.Add(new CompletedStep(schedulerOutput, WithFinishedLoads(ModelRunnerOutput.Empty, waitForOne: true)));
            return;
        }

        SubmitStep(schedulerOutput, completed);
        if (completed.Count > 0)
        {
            // Loads finished meanwhile ride on the last step completed (the scheduler reads them from any output).
            completed[^1] = completed[^1] with { RunnerOutput = WithFinishedLoads(completed[^1].RunnerOutput, waitForOne: false) };
        }
    }

    private void SubmitStep(SchedulerOutput schedulerOutput, List<CompletedStep> completed)
    {
        if (_pooler is not null)
        {
            // The new step is queued before the running one's rows are read: the host's reading and pooling overlap it.
            (StepPlan pooling, int slot) = LaunchPooling(schedulerOutput);
            CompleteInFlight(completed);
            _inFlight = (schedulerOutput, pooling, slot);
            return;
        }

        StepPlan plan = PlanStep(schedulerOutput);
        if (!CanLeaveRunning(plan))
        {
            CompleteInFlight(completed);
            plan.ResolvePendingRows();
            completed.Add(new CompletedStep(schedulerOutput, Run(plan)));
            return;
        }

        ForwardBatch batch = plan.Batch;
        if (plan.PendingRows.Count > 0 && _deviceSampler is not null && _inFlight is not null)
        {
            var pending = new int[2 * plan.PendingRows.Count];
            for (int i = 0; i < plan.PendingRows.Count; i++)
            {
                (int row, RunnerRequest request) = plan.PendingRows[i];
                pending[2 * i] = row;
                pending[2 * i + 1] = request.InFlightSampleRow;
            }

            batch = batch with { PendingTokens = pending };
        }
        else if (plan.PendingRows.Count > 0)
        {
            // The host sampler has the ids already: record them, then the tokens are known.
            CompleteInFlight(completed);
            plan.ResolvePendingRows();
        }

        Tensor logits = Decoder.ForwardToDevice(batch);
        CompleteInFlight(completed);
        LaunchSampling(plan, logits);
        _inFlight = (schedulerOutput, plan, -1);
    }

    private bool CanLeaveRunning(StepPlan plan)
    {
        if (plan.Batch.LogitsRows.Length > Decoder.MaxLogitsRows)
        {
            return false;
        }

        foreach (LogitsRowUse use in plan.Uses)
        {
            if (use.Kind != LogitsRowKind.Sample || _requests[use.RequestId].Sampling.Params.Logprobs is not null)
            {
                return false;
            }
        }

        return true;
    }

    /// <summary>Queues the sampling of the step's rows (the device's), or samples them now (the host's).</summary>
    private void LaunchSampling(StepPlan plan, Tensor logits)
    {
        int rows = plan.Uses.Length, vocab = Decoder.Config.VocabSize;
        if (_deviceSampler is not null)
        {
            _deviceBatch.Clear();
            for (int r = 0; r < rows; r++)
            {
                RunnerRequest request = _requests[plan.Uses[r].RequestId];
                request.InFlightSampleRow = r;
                _deviceBatch.Add(request.Sampling, _eosTokenIds, vocab);
            }

            _deviceBatch.Launch(_deviceSampler, logits);
            return;
        }

        if (_hostTokens.Length < rows)
        {
            _hostTokens = new int[Decoder.MaxLogitsRows];
            _hostLogits = new float[(long)Decoder.MaxLogitsRows * vocab];
        }

        if (rows > 0)
        {
            _backend.CopyToHost(logits, rows, _hostLogits.AsSpan(0, rows * vocab));
        }

        for (int r = 0; r < rows; r++)
        {
            RunnerRequest request = _requests[plan.Uses[r].RequestId];
            request.InFlightSampleRow = r;
            _hostTokens[r] = Sampler.Sample(_hostLogits.AsSpan(r * vocab, vocab), request.Sampling, _eosTokenIds).TokenId;
        }
    }

    /// <summary>
    /// Waits for the running step's ids, records them on the requests still here and completes the step; a pooling step's
    /// rows, which complete its requests' vectors.
    /// </summary>
    private void CompleteInFlight(List<CompletedStep> completed)
    {
        if (_inFlight is not (SchedulerOutput output, StepPlan plan, int poolSlot))
        {
            return;
        }

        _inFlight = null;
        if (_pooler is not null)
        {
            completed.Add(new CompletedStep(output, Pool(output, (plan, poolSlot))));
            return;
        }

        ReadOnlySpan<int> tokens = _deviceSampler is not null ? _deviceBatch.ReadTokens(_deviceSampler) : _hostTokens.AsSpan(0, plan.Uses.Length);
        var sampled = new Dictionary<string, IReadOnlyList<int>>(tokens.Length, StringComparer.Ordinal);
        for (int r = 0; r < tokens.Length; r++)
        {
            string id = plan.Uses[r].RequestId;
            sampled[id] = [tokens[r]];
            // A request finished or aborted meanwhile is gone; the scheduler drops its token too.
            if (_requests.TryGetValue(id, out RunnerRequest? request))
            {
                request.Append(tokens[r]);
                request.InFlightSampleRow = -1;
            }
        }

        completed.Add(new CompletedStep(output, new ModelRunnerOutput(sampled)));
    }

    /// <summary>Runs a step to its end: on the device sampler when every logits row samples, else on the host.</summary>
    private ModelRunnerOutput Run(StepPlan plan)
    {
        if (_deviceSampler is not null && plan.Batch.LogitsRows.Length <= Decoder.MaxLogitsRows
            && plan.Uses.All(u => u.Kind == LogitsRowKind.Sample || (u.Kind == LogitsRowKind.Verify && VerifiesOnDevice(_requests[u.RequestId].Sampling))))
        {
            return SampleOnDevice(plan, _deviceSampler);
        }

        var results = new SampleResult?[plan.Uses.Length];
        var promptLogprobs = new Dictionary<string, List<PositionLogprobs>>(StringComparer.Ordinal);
        int vocab = Decoder.Config.VocabSize;
        Dictionary<string, Verification> verified = Verifications(plan.Uses);

        Decoder.Forward(plan.Batch, (first, count, rows) =>
        {
            // Sampling is per request and independent (each sequence has its own generator), so many requests run in
            // parallel; a request's verify rows and its sample row run in order, each seeing the tokens before it.
            List<(int Start, int End)> groups = RequestRuns(plan.Uses, first, count);
            if ((long)count * vocab >= ParallelHostElements)
            {
                Parallel.ForEach(groups, g => SampleRun(g.Start, g.End));
            }
            else
            {
                foreach ((int start, int end) in groups)
                {
                    SampleRun(start, end);
                }
            }

            void SampleRun(int start, int end)
            {
                for (int r = start; r < end; r++)
                {
                    LogitsRowUse use = plan.Uses[r];
                    Span<float> row = rows.AsSpan((r - first) * vocab, vocab);
                    if (verified.TryGetValue(use.RequestId, out Verification? v))
                    {
                        v.Step(use, row, _requests[use.RequestId], _eosTokenIds);
                    }
                    else
                    {
                        results[r] = SampleRow(use, row);
                    }
                }
            }

            // Prompt rows read the untouched logits; they are never the rows a sampler overwrote.
            for (int r = 0; r < count; r++)
            {
                LogitsRowUse use = plan.Uses[first + r];
                if (use.Kind == LogitsRowKind.PromptLogprob)
                {
                    RunnerRequest request = _requests[use.RequestId];
                    PositionLogprobs position = Logprobs.Compute(
                        rows.AsSpan(r * vocab, vocab), request.TokenIds[use.Position + 1], request.Sampling.Params.PromptLogprobs ?? 0);
                    if (!promptLogprobs.TryGetValue(use.RequestId, out List<PositionLogprobs>? list))
                    {
                        promptLogprobs[use.RequestId] = list = [];
                    }

                    list.Add(position);
                }
            }
        });

        var sampled = new Dictionary<string, IReadOnlyList<int>>(results.Length, StringComparer.Ordinal);
        Dictionary<string, IReadOnlyList<PositionLogprobs>>? logprobs = null;
        for (int r = 0; r < results.Length; r++)
        {
            if (results[r] is not { } result)
            {
                continue;
            }

            string id = plan.Uses[r].RequestId;
            _requests[id].Append(result.TokenId);
            sampled[id] = [result.TokenId];
            if (result.Logprobs is { } lp)
            {
                (logprobs ??= new Dictionary<string, IReadOnlyList<PositionLogprobs>>(StringComparer.Ordinal))[id] = [lp];
            }
        }

        AddVerified(verified, sampled, ref logprobs);
        return new ModelRunnerOutput(
            sampled,
            logprobs,
            promptLogprobs.Count == 0
                ? null
                : promptLogprobs.ToDictionary(p => p.Key, p => new PromptLogprobsChunk(plan.PromptLogprobsStart[p.Key], p.Value), StringComparer.Ordinal));
    }

    /// <summary>The runs of consecutive rows of one request among rows [first, first + count) (a request's rows are adjacent).</summary>
    private static List<(int Start, int End)> RequestRuns(LogitsRowUse[] uses, int first, int count)
    {
        var runs = new List<(int, int)>(count);
        int start = first;
        for (int r = first + 1; r <= first + count; r++)
        {
            if (r == first + count || uses[r].RequestId != uses[start].RequestId)
            {
                runs.Add((start, r));
                start = r;
            }
        }

        return runs;
    }

    /// <summary>Speculative decoding: a <see cref="Verification"/> for each request whose drafts this step verifies.</summary>
    private static Dictionary<string, Verification> Verifications(LogitsRowUse[] uses)
    {
        var verifications = new Dictionary<string, Verification>(StringComparer.Ordinal);
        foreach (LogitsRowUse use in uses)
        {
            if (use.Kind == LogitsRowKind.Verify)
            {
                verifications.TryAdd(use.RequestId, new Verification());
            }
        }

        return verifications;
    }

    /// <summary>The verified requests' tokens (already appended to them) and logprobs, into the step's output.</summary>
    private static void AddVerified(
        Dictionary<string, Verification> verified, Dictionary<string, IReadOnlyList<int>> sampled, ref Dictionary<string, IReadOnlyList<PositionLogprobs>>? logprobs)
    {
        foreach ((string id, Verification v) in verified)
        {
            sampled[id] = v.Tokens;
            if (v.Logprobs is { } lp)
            {
                (logprobs ??= new Dictionary<string, IReadOnlyList<PositionLogprobs>>(StringComparer.Ordinal))[id] = lp;
            }
        }
    }

    /// <summary>
    /// One request's speculative step: each verify row either accepts its draft or ends the step with the token drawn in
    /// its place (<see cref="Sampler.Verify"/>); when every draft is accepted the sample row adds one token more. Each
    /// token is recorded on the request at once, so the next row's processors see it (penalties, min_tokens).
    /// </summary>
    private sealed class Verification
    {
        private bool _done;

        public List<int> Tokens { get; } = [];

        public List<PositionLogprobs>? Logprobs { get; private set; }

        /// <summary>Samples the row on the host (a row after the request's step ended is not sampled: its generator is left as it is).</summary>
        public void Step(LogitsRowUse use, Span<float> row, RunnerRequest request, IReadOnlyCollection<int> eosTokenIds)
        {
            if (_done || use.Kind == LogitsRowKind.PromptLogprob)
            {
                return;
            }

            Record(use, use.Kind == LogitsRowKind.Verify
                ? Sampler.Verify(row, request.Sampling, eosTokenIds, use.DraftTokenId).Result
                : Sampler.Sample(row, request.Sampling, eosTokenIds), request);
        }

        /// <summary>
        /// The token that stands at the row's position (sampled on the host, or the device's argmax): a verify row's ends
        /// the request's step unless it is the draft; the sample row's always does.
        /// </summary>
        public void Record(LogitsRowUse use, SampleResult result, RunnerRequest request)
        {
            if (_done)
            {
                return;
            }

            _done = use.Kind != LogitsRowKind.Verify || result.TokenId != use.DraftTokenId;
            request.Append(result.TokenId);
            Tokens.Add(result.TokenId);
            if (result.Logprobs is { } lp)
            {
                (Logprobs ??= []).Add(lp);
            }
        }
    }

    /// <summary>The host sampler's draw for a sampling row (the caller records it); null for a prompt-logprob row.</summary>
    private SampleResult? SampleRow(LogitsRowUse use, Span<float> logits) =>
        use.Kind == LogitsRowKind.Sample ? Sampler.Sample(logits, _requests[use.RequestId].Sampling, _eosTokenIds) : null;

    /// <summary>
    /// Whether a request's drafts can be verified from the device sampler's argmax of each row: greedy, no logprobs, and
    /// processors that come out the same whatever drafts precede a row (no bad words or penalties, min_tokens reached;
    /// logit_bias and allowed_token_ids do not look at the output). Greedy verification is then exactly: accept while the
    /// row's argmax is the draft. Not with a grammar: a draft row's mask is the grammar's state after the drafts before
    /// it, which the host sampler reaches by appending each accepted token before the next row.
    /// </summary>
    private static bool VerifiesOnDevice(SamplingState s)
    {
        SamplingParams p = s.Params;
        return s.Temperature == 0f && p.Logprobs is null && p.BadWordsTokenIds is not { Count: > 0 } && s.OutputTokenIds.Count >= p.MinTokens
            && p.RepetitionPenalty == 1f && p.FrequencyPenalty == 0f && p.PresencePenalty == 0f && p.Grammar is null;
    }

    /// <summary>
    /// A step whose logits rows all sample (no prompt logprobs), or verify drafts greedily (<see cref="VerifiesOnDevice"/>):
    /// the logits stay on the device.
    /// </summary>
    private ModelRunnerOutput SampleOnDevice(StepPlan plan, IDeviceSampler sampler)
    {
        Tensor logits = Decoder.ForwardToDevice(plan.Batch);
        int vocab = Decoder.Config.VocabSize;
        _deviceBatch.Clear();
        var requests = new RunnerRequest[plan.Uses.Length];
        for (int r = 0; r < requests.Length; r++)
        {
            requests[r] = _requests[plan.Uses[r].RequestId];
            _deviceBatch.Add(requests[r].Sampling, _eosTokenIds, vocab);
        }

        SampleResult[] results = _deviceBatch.Sample(sampler, logits);
        var sampled = new Dictionary<string, IReadOnlyList<int>>(results.Length, StringComparer.Ordinal);
        Dictionary<string, IReadOnlyList<PositionLogprobs>>? logprobs = null;
        Dictionary<string, Verification> verified = Verifications(plan.Uses);
        for (int r = 0; r < results.Length; r++)
        {
            LogitsRowUse use = plan.Uses[r];
            string id = use.RequestId;
            if (verified.TryGetValue(id, out Verification? v))
            {
                // Its drafts' rows, then its sample row, in order.
                v.Record(use, results[r], requests[r]);
                continue;
            }

            requests[r].Append(results[r].TokenId);
            sampled[id] = [results[r].TokenId];
            if (results[r].Logprobs is { } lp)
            {
                (logprobs ??= new Dictionary<string, IReadOnlyList<PositionLogprobs>>(StringComparer.Ordinal))[id] = [lp];
            }
        }

        AddVerified(verified, sampled, ref logprobs);
        return new ModelRunnerOutput(sampled, logprobs, null);
    }

    /// <summary>Applies the scheduler's diffs: finished requests dropped, new ones cached, running ones extended.</summary>
    private void UpdateStates(SchedulerOutput so)
    {
        foreach (string id in so.FinishedRequestIds)
        {
            _requests.Remove(id);
        }

        foreach (NewRequestData data in so.ScheduledNewRequests)
        {
            SamplingParams p = data.SamplingParams;
            var request = new RunnerRequest(data.RequestId, data.PromptTokenIds, new SamplingState(p, data.PromptTokenIds, _seeds.EffectiveSeed(p.Seed, 0)))
            {
                NumComputedTokens = data.NumComputedTokens,
                Images = data.Images,
                Pooling = data.PoolingParams is { } pooling ? new PoolingState(pooling, _pooler ?? throw new InvalidOperationException("A pooling request reached a generative model's runner.")) : null,
            };
            request.BlockIds.AddRange(data.BlockIds);
            _requests[data.RequestId] = request;
        }

        foreach (CachedRequestData data in so.ScheduledCachedRequests)
        {
            RunnerRequest request = _requests[data.RequestId];
            if (data.ResumedFromPreemption)
            {
                // The blocks are new and NewTokenIds holds every output token so far.
                request.BlockIds.Clear();
                request.TokenIds.RemoveRange(request.PromptLength, request.TokenIds.Count - request.PromptLength);
                request.DraftComputed = 0;
                request.DraftFed = [];
                request.Pooling?.Reset();
            }

            request.TokenIds.AddRange(data.NewTokenIds);   // empty unless resumed: the runner appends its own samples
            request.BlockIds.AddRange(data.NewBlockIds);
            request.NumComputedTokens = data.NumComputedTokens;
        }
    }

    public void Dispose()
    {
        (_proposer as IDisposable)?.Dispose();
        _images?.Dispose();
        _backend.Dispose();
        _weights?.Dispose();
    }
}
