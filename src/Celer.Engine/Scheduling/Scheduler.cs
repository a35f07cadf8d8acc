using Celer.Engine.KvCache;

namespace Celer.Engine.Scheduling;

/// <summary>
/// Continuous batching as in vLLM v1: no prefill or decode phases, each request's
/// <see cref="Request.NumComputedTokens"/> catches up with its <see cref="Request.NumTokens"/>
/// under a per-step token budget. Running requests go first, then waiting ones; a long prompt
/// is spread over several steps (chunked prefill); when blocks run out, the lowest-priority /
/// newest running request is preempted and later recomputed, or with swapping loaded back. Not thread-safe: one
/// engine loop owns it.
/// <para>
/// With a host tier, a waiting request whose prefix continues there is taken out of the queue while its blocks load
/// (<see cref="_loading"/>), taking no budget, and put back at the front once the runner reports the load done; it is
/// then scheduled from the loaded prefix on, which counts as computed. Requests behind it may be admitted meanwhile.
/// </para>
/// </summary>
public sealed partial class Scheduler
{
    private readonly Dictionary<string, Request> _requests = [];
    private readonly List<Request> _running = [];
    private readonly IRequestQueue _waiting;
    // Waiting requests whose blocks are being loaded from the host tier: in neither queue until the load is done.
    private readonly HashSet<Request> _loading = [];
    // Finished since the last schedule: the runner drops their cached state.
    private HashSet<string> _finishedRequestIds = [];
    private long _arrivalCounter;
    private int _numPreemptionsSinceStats;
    private readonly SpecDecodingStats _specDecoding = new();

    public Scheduler(SchedulerConfig config)
    {
        Config = config;
        _waiting = IRequestQueue.Create(config.Policy);
        KvCacheManager = new KvCacheManager(
            config.NumKvBlocks, config.BlockSize, config.MaxModelLen, config.EnablePrefixCaching, config.NumHostKvBlocks, config.ModelIdentity);
    }

    public SchedulerConfig Config { get; }
    public KvCacheManager KvCacheManager { get; }
    public int NumRunning => _running.Count;
    /// <summary>Waiting requests, those whose blocks are being loaded from the host tier included (as vLLM counts them).</summary>
    public int NumWaiting => _waiting.Count + _loading.Count;
    public bool HasUnfinishedRequests => _requests.Count > 0;

    /// <summary>
    /// Whether a step would have anything to do, including telling the runner about finished requests and waiting for
    /// loads (an aborted request's blocks are freed once its load is done).
    /// </summary>
    public bool HasWork => _requests.Count > 0 || _finishedRequestIds.Count > 0 || KvCacheManager.HasPendingLoads;
    /// <summary>No request holds a KV block or waits for one to load, and the runner knows of every finished request.</summary>
    public bool HoldsNoBlocks => _running.Count == 0 && _loading.Count == 0 && _finishedRequestIds.Count == 0 && !KvCacheManager.HasPendingLoads;

    /// <summary>Waiting requests are not started while set (a sleep waits for the running ones to finish).</summary>
    public bool AdmissionPaused { get; set; }

    public IReadOnlyList<Request> Running => _running;
    public IEnumerable<Request> Waiting => _waiting;

    /// <summary>Requests whose blocks are being loaded from the host tier.</summary>
    public IReadOnlyCollection<Request> Loading => _loading;

    public Request? GetRequest(string requestId) => _requests.GetValueOrDefault(requestId);

    public void AddRequest(Request request)
    {
        if (!_requests.TryAdd(request.RequestId, request))
        {
            throw new InvalidOperationException($"Request id {request.RequestId} is already in the engine.");
        }
        request.ArrivalOrder = _arrivalCounter++;
        request.QueuedTime = EngineClock.Now;
        _waiting.Add(request);
    }

    public SchedulerOutput Schedule()
    {
        int tokenBudget = Config.MaxNumBatchedTokens;
        var numScheduledTokens = new Dictionary<string, int>();
        var newBlocksByRequest = new Dictionary<string, IReadOnlyList<KvCacheBlock>>();
        var scheduledRunning = new List<Request>();
        var scheduledNew = new List<Request>();
        var scheduledResumed = new List<Request>();
        var preempted = new HashSet<string>();
        var specTokens = new Dictionary<string, int[]>();
        double now = EngineClock.Now;

        // 1. Running requests: each gets as many of its remaining tokens as the budget allows.
        int index = 0;
        while (index < _running.Count && tokenBudget > 0)
        {
            Request request = _running[index];
            int numNewTokens = Math.Min(request.NumTokens + request.NumOutputPlaceholders + request.SpecTokenIds.Length - request.NumComputedTokens, tokenBudget);
            if (numNewTokens <= 0 || ReachesLengthCap(request))
            {
                // Nothing left to compute, or its token in flight ends it; keep scanning the others.
                index++;
                continue;
            }

            IReadOnlyList<KvCacheBlock>? newBlocks;
            while (true)
            {
                newBlocks = KvCacheManager.AllocateSlots(request, numNewTokens, numLookaheadTokens: Config.NumLookaheadTokens);
                if (newBlocks is not null)
                {
                    // Room found (possibly after preempting others).
                    break;
                }
                if (ReleaseLoadedBlocksOfWaiting())
                {
                    // Blocks waiting requests loaded go before anything running is preempted; try again.
                    continue;
                }
                Request victim = PickPreemptionVictim();
                int victimIndex = _running.IndexOf(victim);
                _running.RemoveAt(victimIndex);
                if (victimIndex < index)
                {
                    index--;
                    // The victim came earlier in this step: undo its scheduling, if it had any (one with nothing to
                    // compute, or whose token in flight ends it, was passed over).
                    if (numScheduledTokens.Remove(victim.RequestId, out int victimTokens))
                    {
                        scheduledRunning.Remove(victim);
                        tokenBudget += victimTokens;
                        newBlocksByRequest.Remove(victim.RequestId);
                        specTokens.Remove(victim.RequestId);
                    }
                }
                Preempt(victim);
                preempted.Add(victim.RequestId);
                if (victim == request)
                {
                    // The request itself was the lowest priority: nothing to schedule for it.
                    break;
                }
            }
            if (newBlocks is null)
            {
                // The current request preempted itself, so every later one is lower priority too.
                break;
            }

            scheduledRunning.Add(request);
            newBlocksByRequest[request.RequestId] = newBlocks;
            numScheduledTokens[request.RequestId] = numNewTokens;
            tokenBudget -= numNewTokens;
            // The drafts the budget let in (vLLM: num_new_tokens + num_computed_tokens − num_tokens of them).
            int numSpec = request.NumComputedTokens + numNewTokens - request.NumTokens - request.NumOutputPlaceholders;
            if (numSpec > 0)
            {
                specTokens[request.RequestId] = request.SpecTokenIds.Length == numSpec ? request.SpecTokenIds : request.SpecTokenIds[..numSpec];
            }

            index++;
        }

        // 2. Waiting requests, unless this step had to preempt (then the pool is too tight to admit more).
        if (preempted.Count == 0 && !AdmissionPaused)
        {
            while (_waiting.Count > 0 && tokenBudget > 0)
            {
                if (_running.Count >= Config.MaxNumSeqs)
                {
                    // The batch holds as many sequences as allowed.
                    break;
                }
                Request request = _waiting.Peek();
                if (request.NumOutputPlaceholders > 0)
                {
                    // Preempted while its last step was in flight: it resumes once that token arrives.
                    break;
                }
                IReadOnlyList<KvCacheBlock> computedBlocks = [];
                int numComputedTokens = request.NumComputedTokens;
                if (numComputedTokens == 0)
                {
                    (computedBlocks, numComputedTokens) = KvCacheManager.GetComputedBlocks(request);
                    if (TryStartLoad(request, computedBlocks, numComputedTokens) is { } started)
                    {
                        if (!started)
                        {
                            // No room for the blocks to load into: later requests must not jump the queue.
                            break;
                        }
                        // Loading takes no budget; the next waiting request may be admitted meanwhile.
                        continue;
                    }
                }
                // Else its prefix came back from the host tier: those blocks are allocated and cached already.
                int numNewTokens = request.NumTokens - numComputedTokens;
                if (!Config.EnableChunkedPrefill && numNewTokens > tokenBudget)
                {
                    // Without chunked prefill a prompt runs whole; stop here to keep the queue's order.
                    break;
                }
                numNewTokens = Math.Min(numNewTokens, tokenBudget);
                IReadOnlyList<KvCacheBlock>? newBlocks = KvCacheManager.AllocateSlots(
                    request, numNewTokens, numComputedTokens - request.NumComputedTokens, computedBlocks, Config.NumLookaheadTokens);
                if (newBlocks is null)
                {
                    // No room: waiting requests never preempt running ones, and later ones must not jump the queue.
                    ReleaseLoadedBlocksOfWaiting();
                    break;
                }

                _waiting.Pop();
                _running.Add(request);
                (request.Status == RequestStatus.Preempted ? scheduledResumed : scheduledNew).Add(request);
                request.Status = RequestStatus.Running;
                request.NumComputedTokens = numComputedTokens;
                if (request.NumCachedTokens < 0)
                {
                    request.NumCachedTokens = numComputedTokens;
                }
                if (request.FirstScheduledTime == 0)
                {
                    request.FirstScheduledTime = now;
                }
                newBlocksByRequest[request.RequestId] = newBlocks;
                numScheduledTokens[request.RequestId] = numNewTokens;
                tokenBudget -= numNewTokens;
            }
        }

        SchedulerOutput output = BuildOutput(scheduledNew, scheduledResumed, scheduledRunning, numScheduledTokens, newBlocksByRequest, preempted, specTokens);
        _finishedRequestIds = [];
        return output;
    }

    /// <summary>
    /// A request finds no room: every waiting request holding blocks loaded from the host tier lets them go (they stay
    /// cached, for a device hit later); true when one did. Were they to keep them while waiting behind a request that
    /// needs them (one preempted, or of higher priority, after their load went to the front), it might never find room,
    /// with nothing running to free any, or a running request would preempt itself over and over.
    /// </summary>
    private bool ReleaseLoadedBlocksOfWaiting()
    {
        bool released = false;
        foreach (Request waiting in _waiting)
        {
            if (waiting.NumComputedTokens > 0)
            {
                KvCacheManager.Free(waiting);
                waiting.NumComputedTokens = 0;
                released = true;
            }
        }
        return released;
    }

    /// <summary>
    /// Starts loading what the host tier holds of a waiting request beyond its device hits: its swapped-out blocks, or
    /// its prefix's next blocks. Null when there is nothing to load (admit it as usual); true when loading started (it
    /// left the queue, its loaded prefix counted as computed); false when the device has no room for the blocks.
    /// </summary>
    private bool? TryStartLoad(Request request, IReadOnlyList<KvCacheBlock> deviceHits, int numDeviceHitTokens)
    {
        KvLoad? load;
        int numLoadedTokens = KvCacheManager.NumSwappedTokens(request);
        if (numLoadedTokens > numDeviceHitTokens)
        {
            load = KvCacheManager.AllocateForSwapIn(request, deviceHits);
        }
        else
        {
            if (numLoadedTokens > 0)
            {
                // The device still holds everything it swapped out.
                KvCacheManager.DropSwappedBlocks(request);
            }

            int numHostHits = KvCacheManager.FindHostHits(request, deviceHits.Count);
            if (numHostHits == 0)
            {
                return null;
            }

            numLoadedTokens = (deviceHits.Count + numHostHits) * Config.BlockSize;
            load = KvCacheManager.AllocateForLoad(request, deviceHits, numHostHits);
        }

        if (load is null)
        {
            return false;
        }

        _waiting.Pop();
        _loading.Add(request);
        request.NumComputedTokens = numLoadedTokens;
        if (request.NumCachedTokens < 0)
        {
            request.NumCachedTokens = numLoadedTokens;
        }
        return true;
    }

    /// <summary>
    /// Whether the tokens still in flight take the request to max_tokens or the context length: a step for it now
    /// would only compute a token that is dropped (async scheduling; without it there are no tokens in flight).
    /// </summary>
    private bool ReachesLengthCap(Request request) =>
        request.NumOutputPlaceholders > 0
        && (request.NumOutputTokens + request.NumOutputPlaceholders >= request.MaxTokens
            || request.NumTokens + request.NumOutputPlaceholders >= Config.MaxModelLen);

    /// <summary>The running request to give up: the last admitted (FCFS), or the lowest priority
    /// with the latest arrival (priority policy), as vLLM picks.</summary>
    private Request PickPreemptionVictim()
    {
        if (Config.Policy == SchedulingPolicy.Fcfs)
        {
            return _running[^1];
        }
        Request victim = _running[0];
        foreach (Request candidate in _running)
        {
            if (PriorityRequestQueue.PriorityComparer.Instance.Compare(candidate, victim) > 0)
            {
                victim = candidate;
            }
        }
        return victim;
    }

    /// <summary>
    /// Preemption frees the request's blocks (still cached, so a resumption by recompute is mostly hits). By swapping, its
    /// computed tokens' blocks are first stored in the host tier to come back on resumption; where the tier cannot hold
    /// them, or the request must compute every prompt position (prompt logprobs, pooling), it is recomputed.
    /// </summary>
    private void Preempt(Request request)
    {
        if (Config.PreemptionMode == PreemptionMode.Swap && !request.SkipPrefixCacheReads)
        {
            // The last known token is left out: resumption computes at least one token, for its logits (with async
            // scheduling the computed count may run past the known tokens; the stores wait for the step in flight).
            KvCacheManager.SwapOut(request, Math.Min(request.NumComputedTokens, request.NumTokens - 1));
        }
        KvCacheManager.Free(request);
        request.Status = RequestStatus.Preempted;
        request.NumComputedTokens = 0;
        request.SpecTokenIds = [];
        request.NumPreemptions++;
        _numPreemptionsSinceStats++;
        _waiting.Prepend(request);
    }

    private SchedulerOutput BuildOutput(
        List<Request> scheduledNew,
        List<Request> scheduledResumed,
        List<Request> scheduledRunning,
        Dictionary<string, int> numScheduledTokens,
        Dictionary<string, IReadOnlyList<KvCacheBlock>> newBlocksByRequest,
        HashSet<string> preempted,
        Dictionary<string, int[]> specTokens)
    {
        var newRequests = new List<NewRequestData>(scheduledNew.Count);
        foreach (Request request in scheduledNew)
        {
            newRequests.Add(new NewRequestData(
                request.RequestId, request.PromptTokenIds, request.SamplingParams,
                KvCacheManager.GetBlockIds(request.RequestId), request.NumComputedTokens, request.PoolingParams) { Images = request.Images });
        }
        var cachedRequests = new List<CachedRequestData>(scheduledResumed.Count + scheduledRunning.Count);
        foreach (Request request in scheduledResumed)
        {
            cachedRequests.Add(new CachedRequestData(
                request.RequestId, ResumedFromPreemption: true, request.OutputTokenIds.ToArray(),
                KvCacheManager.GetBlockIds(request.RequestId), request.NumComputedTokens));
        }
        foreach (Request request in scheduledRunning)
        {
            // The runner has the tokens it sampled; only the new blocks are news.
            IReadOnlyList<KvCacheBlock> newBlocks = newBlocksByRequest[request.RequestId];
            int[] newBlockIds = newBlocks.Count == 0 ? [] : new int[newBlocks.Count];   // most decode steps need no block
            for (int i = 0; i < newBlockIds.Length; i++)
            {
                newBlockIds[i] = newBlocks[i].BlockId;
            }
            cachedRequests.Add(new CachedRequestData(request.RequestId, ResumedFromPreemption: false, [], newBlockIds, request.NumComputedTokens));
        }

        // The tokens are counted as computed now (vLLM's _update_after_schedule), so the next
        // schedule never hands out the same positions twice. With async scheduling the token a step samples is
        // a placeholder until its output comes back, and the next step may already feed it.
        var sampled = new HashSet<string>();
        int total = 0;
        foreach ((string requestId, int numTokens) in numScheduledTokens)
        {
            Request request = _requests[requestId];
            request.NumComputedTokens += numTokens;
            total += numTokens;
            // Drafts are verified by this step, which proposes the next ones: a request has none until it returns.
            int numSpec = specTokens.TryGetValue(requestId, out int[]? drafts) ? drafts.Length : 0;
            request.SpecTokenIds = [];
            if (request.NumComputedTokens == request.NumTokens + request.NumOutputPlaceholders + numSpec)
            {
                sampled.Add(requestId);
                if (Config.AsyncScheduling)
                {
                    request.NumOutputPlaceholders++;
                }
            }
        }
        return new SchedulerOutput(newRequests, cachedRequests, numScheduledTokens, total, sampled, preempted, _finishedRequestIds)
        {
            ScheduledSpecTokens = specTokens,
            KvTransfers = KvCacheManager.TakeTransfers(),
        };
    }
}
