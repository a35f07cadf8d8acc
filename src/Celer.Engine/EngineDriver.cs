using Celer.Engine.Output;
using Celer.Engine.Scheduling;
using Celer.Tokenization;

namespace Celer.Engine;

/// <summary>
/// Admission, core and output processing run together on one thread; shared by
/// <see cref="LlmEngine"/> (the caller's thread) and <see cref="AsyncLlmEngine"/> (its loop thread).
/// </summary>
internal sealed class EngineDriver : IDisposable
{
    private readonly EngineCore _core;
    private readonly OutputProcessor _outputProcessor;
    private readonly IEngineStatsListener? _listener;
    private readonly Dictionary<FinishReason, long> _requestSuccess = [];
    private long _prefixQueries, _prefixHits, _preemptions, _promptTokens, _generationTokens, _steps;
    private readonly Scheduling.SpecDecodingStats _specDecoding = new();
    private readonly long _hostKvBlockBytes;
    private KvCache.KvOffloadStats _kvOffload;

    public EngineDriver(EngineArgs args, IModelExecutor executor, Tokenizer? tokenizer, EngineModelInfo model, IEngineStatsListener? listener)
    {
        SchedulerConfig config = args.CreateSchedulerConfig(model.MaxModelLen, executor.NumKvBlocks, executor, pooler: model.Pooler);
        var structuredOutputs = tokenizer is null ? null : new StructuredOutputs.StructuredOutputCompiler(
            tokenizer, model.VocabSize, [.. model.EosTokenId is { } eos ? [eos] : Array.Empty<int>(), .. model.GenerationEosTokenIds ?? []]);
        InputProcessor = new InputProcessor(tokenizer, model.VocabSize, config.MaxModelLen, model.EosTokenId, model.GenerationEosTokenIds, args.MaxLogprobs, structuredOutputs, model.Pooler, model.Images);
        _core = new EngineCore(config, executor);
        _hostKvBlockBytes = config.NumHostKvBlocks > 0 ? executor.HostKvBlockBytes : 0;
        _outputProcessor = new OutputProcessor(tokenizer);
        _listener = listener;
    }

    /// <summary>Stateless, so callers may use it on their own threads before handing the request over.</summary>
    public InputProcessor InputProcessor { get; }
    public Scheduler Scheduler => _core.Scheduler;
    public bool HasWork => _core.HasWork;
    public EngineStats Stats { get; private set; } = EngineStats.Empty;

    public void Add(GenerateRequest request, IReadOnlyList<Request> engineRequests, double arrivalTime)
    {
        _outputProcessor.AddRequest(request, engineRequests, arrivalTime);
        foreach (Request engineRequest in engineRequests)
        {
            _core.AddRequest(engineRequest);
        }
        PublishStats();
    }

    /// <summary>Ends a request now and frees its blocks; null when it already finished.</summary>
    public RequestOutput? Abort(string requestId)
    {
        if (_outputProcessor.Abort(requestId, EngineClock.Now) is not { } aborted)
        {
            return null;
        }
        _core.AbortRequests(aborted.EngineRequestIds);
        RecordFinished(requestId, aborted.Metrics);
        PublishStats();
        return aborted.Output;
    }

    public IReadOnlyList<RequestOutput> Step()
    {
        (List<EngineCoreOutput> coreOutputs, SchedulerStats schedulerStats) = _core.Step();
        ProcessedOutputs processed = _outputProcessor.Process(coreOutputs, EngineClock.Now);
        if (processed.EngineRequestsToAbort.Count > 0)
        {
            // Stop strings are found in text, after the core already kept going: free those sequences.
            _core.AbortRequests(processed.EngineRequestsToAbort);
        }

        _steps++;
        _prefixQueries += schedulerStats.PrefixCache.Queries;
        _prefixHits += schedulerStats.PrefixCache.Hits;
        _preemptions += schedulerStats.NumPreemptions;
        _specDecoding.Add(schedulerStats.SpecDecoding);
        _kvOffload = _kvOffload.Add(schedulerStats.KvOffload);
        _promptTokens += processed.NumPromptTokens;
        _generationTokens += processed.NumGenerationTokens;
        foreach ((string requestId, RequestMetrics metrics) in processed.FinishedRequests)
        {
            RecordFinished(requestId, metrics);
        }
        _listener?.OnIteration(new IterationStats(
            _core.Scheduler.NumRunning, _core.Scheduler.NumWaiting, _core.Scheduler.KvCacheManager.Usage,
            schedulerStats.PrefixCache.Queries, schedulerStats.PrefixCache.Hits, schedulerStats.NumPreemptions,
            processed.NumPromptTokens, processed.NumGenerationTokens, schedulerStats.NumScheduledTokens,
            processed.TimesToFirstToken, processed.InterTokenLatencies));
        PublishStats();
        return processed.RequestOutputs;
    }

    /// <summary>Sleep mode: whether the executor can give its memory back.</summary>
    public bool SupportsSleep => _core.Executor.SupportsSleep;

    public bool WeightsAsleep { get; private set; }

    public bool KvCacheAsleep { get; private set; }

    /// <summary>Whether any part of the model (weights, KV cache) sleeps.</summary>
    public bool IsSleeping => WeightsAsleep || KvCacheAsleep;

    /// <summary>Device bytes a full wake-up takes back.</summary>
    public long BytesToWake => _core.Executor.BytesToWake;

    /// <summary>Free device memory now; null on the CPU.</summary>
    public long? DeviceFreeBytes => _core.Executor.DeviceFreeBytes;

    /// <summary>Whether the model may sleep now: no step running, no request holding KV memory.</summary>
    public bool IsQuiet => _core.IsQuiet;

    /// <summary>
    /// Puts the model to sleep (only while <see cref="IsQuiet"/>): the device prefix cache is forgotten, since its blocks'
    /// contents go; the host tier keeps its copies, which hold the same weights' keys and values.
    /// </summary>
    public void Sleep(int level)
    {
        if (!_core.Scheduler.KvCacheManager.ResetPrefixCache(keepHostTier: true))
        {
            throw new InvalidOperationException("The model cannot sleep while requests hold KV blocks.");
        }

        _core.Executor.Sleep(level);
        WeightsAsleep = KvCacheAsleep = true;
    }

    /// <summary>Wakes the weights and/or the KV cache (vLLM's wake_up tags); the model serves once both are awake.</summary>
    public void WakeUp(bool weights, bool kvCache)
    {
        _core.Executor.WakeUp(weights, kvCache);
        WeightsAsleep &= !weights;
        KvCacheAsleep &= !kvCache;
    }

    /// <summary>Holds back waiting requests while a sleep waits for the running ones to finish.</summary>
    public bool AdmissionPaused
    {
        get => _core.Scheduler.AdmissionPaused;
        set => _core.Scheduler.AdmissionPaused = value;
    }

    /// <summary>Forgets every request without touching the core (the engine died); returns their ids.</summary>
    public IReadOnlyList<string> Clear() => _outputProcessor.Clear();

    public void Dispose() => _core.Dispose();

    private void RecordFinished(string requestId, RequestMetrics metrics)
    {
        _requestSuccess[metrics.FinishReason] = _requestSuccess.GetValueOrDefault(metrics.FinishReason) + 1;
        _listener?.OnRequestFinished(requestId, metrics);
    }

    // An immutable snapshot swapped in whole, so other threads read a consistent Stats without locks.
    private void PublishStats() => Stats = new EngineStats(
        _core.Scheduler.NumRunning, _core.Scheduler.NumWaiting, _core.Scheduler.KvCacheManager.Usage,
        _prefixQueries, _prefixHits, _preemptions, _promptTokens, _generationTokens, _steps,
        new Dictionary<FinishReason, long>(_requestSuccess))
    {
        SpecDecoding = _specDecoding.Snapshot(),
        KvOffload = _core.Scheduler.KvCacheManager.Host is { } host
            ? new KvOffloadTotals(_kvOffload, _kvOffload.StoredBlocks * _hostKvBlockBytes, _kvOffload.LoadedBlocks * _hostKvBlockBytes, host.Usage)
            : null,
    };
}
