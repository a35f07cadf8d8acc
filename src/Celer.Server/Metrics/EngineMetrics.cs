using Celer.Engine;
using Celer.Server.Protocol;
using Prometheus;

namespace Celer.Server.Metrics;

/// <summary>
/// vLLM's Prometheus metrics (<c>vllm/v1/metrics/loggers.py</c>), with its names, labels
/// (<c>model_name</c>, <c>engine</c>) and buckets. Gauges and counters are read from the engine's
/// <see cref="EngineStats"/> snapshot at scrape time; histograms are fed by the engine's
/// <see cref="IEngineStatsListener"/> callbacks as steps run and requests finish.
/// </summary>
/// <remarks>
/// Of vLLM's set, these are left out because the engine has no such feature or data:
/// <c>lora_requests_info</c> (vLLM emits it only with --enable-lora), <c>engine_sleep_state</c> (no
/// sleep mode), <c>mm_cache_*</c> (no multimodal inputs) and opt-in <c>kv_block_*</c> metrics. With a host KV tier
/// (<c>--kv-offload-size</c>) the offloading connector's metrics are added (<see cref="KvOffloadMetrics"/>). <c>cache_config_info</c> carries the labels
/// its consumers read (block_size, num_gpu_blocks, enable_prefix_caching, engine). Names vLLM has removed
/// (<c>gpu_cache_usage_perc</c>, <c>time_per_output_token_seconds</c>, <c>num_requests_swapped</c>)
/// are not revived.
/// </remarks>
internal sealed class EngineMetrics : IEngineStatsListener
{
    /// <summary>vLLM v1 runs one engine core per server here, labelled "0".</summary>
    private const string EngineIndex = "0";

    private static readonly double[] TimeToFirstTokenBuckets =
        [0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0, 40.0, 80.0, 160.0, 640.0, 2560.0];

    private static readonly double[] InterTokenLatencyBuckets =
        [0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0, 40.0, 80.0];

    private static readonly double[] RequestLatencyBuckets =
        [0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0, 120.0, 240.0, 480.0, 960.0, 1920.0, 7680.0];

    /// <summary>vLLM's <c>[1, 8] + cudagraph_capture_sizes</c>; these are its default capture sizes' powers of two.</summary>
    private static readonly double[] IterationTokensBuckets =
        [1, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384];

    private static readonly double[] RequestParamsNBuckets = [1, 2, 5, 10, 20];

    private readonly AsyncLlmEngine _engine;
    private readonly string[] _labels;

    private readonly Gauge.Child _numRequestsRunning;
    private readonly Gauge.Child _numRequestsWaiting;
    private readonly Gauge.Child _kvCacheUsage;
    private readonly Counter.Child _prefixCacheQueries;
    private readonly Counter.Child _prefixCacheHits;
    private readonly Counter.Child _numPreemptions;
    private readonly Counter.Child _promptTokens;
    private readonly Counter.Child _generationTokens;
    private readonly Counter.Child _specDecodeNumDrafts;
    private readonly Counter.Child _specDecodeNumDraftTokens;
    private readonly Counter.Child _specDecodeNumAcceptedTokens;
    private readonly Counter _specDecodeAcceptedPerPosition;
    private readonly Counter _requestSuccess;
    private readonly Histogram.Child _timeToFirstToken;
    private readonly Histogram.Child _interTokenLatency;
    private readonly Histogram.Child _e2eLatency;
    private readonly Histogram.Child _queueTime;
    private readonly Histogram.Child _prefillTime;
    private readonly Histogram.Child _decodeTime;
    private readonly Histogram.Child _inferenceTime;
    private readonly Histogram.Child _timePerOutputToken;
    private readonly Histogram.Child _requestPromptTokens;
    private readonly Histogram.Child _requestGenerationTokens;
    private readonly Histogram.Child _iterationTokens;
    private readonly Histogram.Child _maxNumGenerationTokens;
    private readonly Histogram.Child _paramsN;
    private readonly Histogram.Child _paramsMaxTokens;
    private readonly int _maxModelLen;
    private readonly KvOffloadMetrics? _kvOffload;

    /// <summary>
    /// vLLM's <c>cache_config_info</c>: an info gauge (always 1) whose labels carry the KV cache configuration; the
    /// Gateway API Inference Extension reads <c>block_size</c> and <c>num_gpu_blocks</c> from it.
    /// </summary>
    public void PublishCacheConfig(int blockSize, int numBlocks, bool enablePrefixCaching)
    {
        var factory = Prometheus.Metrics.WithCustomRegistry(Registry);
        factory.CreateGauge(Exposition.InternalPrefix + "cache_config_info", "Information of the LLMEngine CacheConfig",
                ["block_size", "enable_prefix_caching", "num_gpu_blocks", "engine"])
            .WithLabels(blockSize.ToString(System.Globalization.CultureInfo.InvariantCulture), enablePrefixCaching ? "True" : "False",
                numBlocks.ToString(System.Globalization.CultureInfo.InvariantCulture), EngineIndex)
            .Set(1);
    }

    /// <param name="exposition">The server's registry. A server of several models registers each model's metrics in
    /// the same one: a family is created once (prometheus-net hands the existing one back to the next model) and each
    /// model writes its own <c>model_name</c> series of it.</param>
    /// <param name="tokenBucketsMaxLen">The largest <c>max_model_len</c> of the server's models: the token-count
    /// histograms' buckets (vLLM's 1-2-5 series up to it), which one family shares across models.</param>
    /// <param name="hostKvTier">Whether the engine has a host KV tier, whose metrics are then published.</param>
    public EngineMetrics(AsyncLlmEngine engine, string modelName, int maxModelLen, PrometheusExposition exposition, int tokenBucketsMaxLen, bool hostKvTier = false)
    {
        _engine = engine;
        _maxModelLen = maxModelLen;
        Exposition = exposition;
        Registry = Exposition.Registry;
        var factory = Prometheus.Metrics.WithCustomRegistry(Registry);
        var p = Exposition.InternalPrefix;
        string[] labelNames = ["model_name", "engine"];
        _labels = [modelName, EngineIndex];

        Gauge GaugeOf(string name, string help) => factory.CreateGauge(p + name, help, labelNames);
        // Python's prometheus_client exposes a Counter "x" as "x_total"; prometheus-net writes names
        // as given, so the suffix is part of the name here to match vLLM on the wire.
        Counter.Child CounterOf(string name, string help) => factory.CreateCounter(p + name + "_total", help, labelNames).WithLabels(_labels);
        Histogram.Child HistogramOf(string name, string help, double[] buckets) =>
            factory.CreateHistogram(p + name, help, new HistogramConfiguration { LabelNames = labelNames, Buckets = buckets }).WithLabels(_labels);

        _numRequestsRunning = GaugeOf("num_requests_running", "Number of requests in model execution batches.").WithLabels(_labels);
        _numRequestsWaiting = GaugeOf("num_requests_waiting", "Number of requests waiting to be processed.").WithLabels(_labels);
        _kvCacheUsage = GaugeOf("kv_cache_usage_perc", "KV-cache usage. 1 means 100 percent usage.").WithLabels(_labels);
        _prefixCacheQueries = CounterOf("prefix_cache_queries", "Prefix cache queries, in terms of number of queried tokens.");
        _prefixCacheHits = CounterOf("prefix_cache_hits", "Prefix cache hits, in terms of number of cached tokens.");
        _numPreemptions = CounterOf("num_preemptions", "Cumulative number of preemption from the engine.");
        _promptTokens = CounterOf("prompt_tokens", "Number of prefill tokens processed.");
        _generationTokens = CounterOf("generation_tokens", "Number of generation tokens processed.");
        _specDecodeNumDrafts = CounterOf("spec_decode_num_drafts", "Number of spec decoding drafts.");
        _specDecodeNumDraftTokens = CounterOf("spec_decode_num_draft_tokens", "Number of draft tokens.");
        _specDecodeNumAcceptedTokens = CounterOf("spec_decode_num_accepted_tokens", "Number of accepted tokens.");
        _specDecodeAcceptedPerPosition = factory.CreateCounter(p + "spec_decode_num_accepted_tokens_per_pos_total",
            "Accepted tokens per draft position.", ["model_name", "engine", "position"]);
        _requestSuccess = factory.CreateCounter(p + "request_success_total", "Count of successfully processed requests.",
            ["model_name", "engine", "finished_reason"]);
        // vLLM creates one series per finish reason up front: a series that first appears at 1 loses
        // that request to increase()/rate(), which the dashboard's "Finish Reason" panel is built on.
        foreach (var reason in Enum.GetValues<FinishReason>())
            _requestSuccess.WithLabels(_labels[0], _labels[1], FinishReasons.ToWire(reason));
        _timeToFirstToken = HistogramOf("time_to_first_token_seconds", "Histogram of time to first token in seconds.", TimeToFirstTokenBuckets);
        _interTokenLatency = HistogramOf("inter_token_latency_seconds", "Histogram of inter-token latency in seconds.", InterTokenLatencyBuckets);
        _e2eLatency = HistogramOf("e2e_request_latency_seconds", "Histogram of e2e request latency in seconds.", RequestLatencyBuckets);
        _queueTime = HistogramOf("request_queue_time_seconds", "Histogram of time spent in WAITING phase for request.", RequestLatencyBuckets);
        _prefillTime = HistogramOf("request_prefill_time_seconds", "Histogram of time spent in PREFILL phase for request.", RequestLatencyBuckets);
        _decodeTime = HistogramOf("request_decode_time_seconds", "Histogram of time spent in DECODE phase for request.", RequestLatencyBuckets);
        _inferenceTime = HistogramOf("request_inference_time_seconds", "Histogram of time spent in RUNNING phase for request.", RequestLatencyBuckets);
        _timePerOutputToken = HistogramOf("request_time_per_output_token_seconds", "Histogram of time_per_output_token_seconds per request.", InterTokenLatencyBuckets);
        var tokenBuckets = Build125Buckets(tokenBucketsMaxLen);
        _requestPromptTokens = HistogramOf("request_prompt_tokens", "Number of prefill tokens processed.", tokenBuckets);
        _requestGenerationTokens = HistogramOf("request_generation_tokens", "Number of generation tokens processed.", tokenBuckets);
        _iterationTokens = HistogramOf("iteration_tokens_total", "Histogram of number of tokens per engine_step.", IterationTokensBuckets);
        _maxNumGenerationTokens = HistogramOf("request_max_num_generation_tokens", "Histogram of maximum number of requested generation tokens.", tokenBuckets);
        _paramsN = HistogramOf("request_params_n", "Histogram of the n request parameter.", RequestParamsNBuckets);
        _paramsMaxTokens = HistogramOf("request_params_max_tokens", "Histogram of the max_tokens request parameter.", tokenBuckets);
        if (hostKvTier)
        {
            _kvOffload = new KvOffloadMetrics(
                CounterOf("kv_offload_store_bytes", "Total bytes stored from GPU to offload storage."),
                CounterOf("kv_offload_load_bytes", "Total bytes loaded from offload storage to GPU."),
                CounterOf("external_prefix_cache_queries", "External prefix cache queries from KV connector cross-instance cache sharing, in terms of number of queried tokens."),
                CounterOf("external_prefix_cache_hits", "External prefix cache hits from KV connector cross-instance cache sharing, in terms of number of cached tokens."),
                CounterOf("kv_offload_cpu_block_lookup", "Number of KV blocks looked up in the CPU offload tier."),
                CounterOf("kv_offload_cpu_block_hit", "Number of KV blocks found in the CPU offload tier."),
                CounterOf("kv_offload_block_eviction", "Number of KV blocks evicted from the CPU offload tier."),
                GaugeOf("kv_offload_cpu_cache_usage_perc", "CPU offload tier usage. 1 means 100 percent usage.").WithLabels(_labels));
        }

        Registry.AddBeforeCollectCallback(UpdateFromSnapshot);
    }

    public CollectorRegistry Registry { get; }

    public PrometheusExposition Exposition { get; }

    public void OnIteration(IterationStats stats)
    {
        foreach (var ttft in stats.TimesToFirstToken)
            _timeToFirstToken.Observe(ttft);
        foreach (var itl in stats.InterTokenLatencies)
            _interTokenLatency.Observe(itl);
        // vLLM observes the step's prompt tokens (whole prompts of requests that got their first token)
        // plus its generated tokens, on steps that produced output; a partial prefill chunk counts nothing.
        var outputTokens = stats.NumPromptTokens + stats.NumGenerationTokens;
        if (outputTokens > 0)
            _iterationTokens.Observe(outputTokens);
    }

    public void OnRequestFinished(string requestId, RequestMetrics metrics)
    {
        _e2eLatency.Observe(metrics.E2eLatency);
        _queueTime.Observe(metrics.QueueTime);
        _prefillTime.Observe(metrics.PrefillTime);
        _decodeTime.Observe(metrics.DecodeTime);
        _inferenceTime.Observe(metrics.InferenceTime);
        _requestPromptTokens.Observe(metrics.NumPromptTokens);
        _requestGenerationTokens.Observe(metrics.NumGenerationTokens);
        // The first token is the prefill's; the decode phase made the rest.
        _timePerOutputToken.Observe(metrics.NumGenerationTokens > 1 ? metrics.DecodeTime / (metrics.NumGenerationTokens - 1) : 0);
        _paramsN.Observe(metrics.N);
        // An unset max_tokens is "the rest of the context", which vLLM's server writes into the request.
        _paramsMaxTokens.Observe(metrics.MaxTokens ?? _maxModelLen - metrics.NumPromptTokens);
        // vLLM observes the longest of the n samples.
        _maxNumGenerationTokens.Observe(metrics.MaxNumGenerationTokens);
    }

    /// <summary>Gauges and counters from the engine's own totals, so they are exact at every scrape.</summary>
    private void UpdateFromSnapshot()
    {
        var stats = _engine.Stats;
        _numRequestsRunning.Set(stats.NumRunning);
        _numRequestsWaiting.Set(stats.NumWaiting);
        _kvCacheUsage.Set(stats.KvCacheUsage);
        _prefixCacheQueries.IncTo(stats.PrefixCacheQueries);
        _prefixCacheHits.IncTo(stats.PrefixCacheHits);
        _numPreemptions.IncTo(stats.NumPreemptions);
        _promptTokens.IncTo(stats.PromptTokens);
        _generationTokens.IncTo(stats.GenerationTokens);
        _specDecodeNumDrafts.IncTo(stats.SpecDecoding.NumDrafts);
        _specDecodeNumDraftTokens.IncTo(stats.SpecDecoding.NumDraftTokens);
        _specDecodeNumAcceptedTokens.IncTo(stats.SpecDecoding.NumAcceptedTokens);
        for (int position = 0; position < stats.SpecDecoding.NumAcceptedTokensPerPosition.Count; position++)
        {
            _specDecodeAcceptedPerPosition.WithLabels(_labels[0], _labels[1], position.ToString(System.Globalization.CultureInfo.InvariantCulture))
                .IncTo(stats.SpecDecoding.NumAcceptedTokensPerPosition[position]);
        }

        foreach (var (reason, count) in stats.RequestSuccess)
            _requestSuccess.WithLabels(_labels[0], _labels[1], FinishReasons.ToWire(reason)).IncTo(count);
        if (_kvOffload is { } offload && stats.KvOffload is { } totals)
            offload.Update(totals);
    }

    /// <summary>
    /// The host KV tier's metrics under vLLM's names for its offloading connector: bytes each way (the flat
    /// <c>kv_offload_store_bytes</c> / <c>kv_offload_load_bytes</c> that replace the <c>transfer_type</c>-labelled
    /// <c>kv_offload_total_bytes</c>), the tokens looked up and found there as the prefix cache's
    /// (<c>external_prefix_cache_*</c>, the connector's share of prefix hits), the CPU tier's block lookups, hits and
    /// evictions, and its usage.
    /// </summary>
    private sealed record KvOffloadMetrics(
        Counter.Child StoreBytes, Counter.Child LoadBytes, Counter.Child Queries, Counter.Child Hits,
        Counter.Child BlockLookups, Counter.Child BlockHits, Counter.Child Evictions, Gauge.Child Usage)
    {
        public void Update(KvOffloadTotals totals)
        {
            StoreBytes.IncTo(totals.StoreBytes);
            LoadBytes.IncTo(totals.LoadBytes);
            Queries.IncTo(totals.Counters.Queries);
            Hits.IncTo(totals.Counters.Hits);
            BlockLookups.IncTo(totals.Counters.BlockLookups);
            BlockHits.IncTo(totals.Counters.BlockHits);
            Evictions.IncTo(totals.Counters.Evictions);
            Usage.Set(totals.Usage);
        }
    }

    /// <summary>vLLM's <c>build_1_2_5_buckets</c>: 1, 2, 5, 10, 20, 50, … up to <paramref name="max"/>.</summary>
    internal static double[] Build125Buckets(int max)
    {
        var buckets = new List<double>();
        for (long scale = 1; ; scale *= 10)
        {
            foreach (var mantissa in (ReadOnlySpan<int>)[1, 2, 5])
            {
                var value = mantissa * scale;
                if (value > max)
                    return [.. buckets];
                buckets.Add(value);
            }
        }
    }
}
