using System.Globalization;
using System.Text;
using Celer.Server.Tests.Integration;

namespace Celer.Server.Tests.Metrics;

/// <summary>
/// The real <c>/metrics</c> against what the tools built for vLLM read from it. Each list below is
/// the metric names one consumer queries, written down from its source; a rename, a lost label or
/// a changed type on our side breaks that consumer, and this test.
/// </summary>
[Collection(ServerCollection.Name)]
public sealed class VllmConsumersTests(ServerFixture server)
{
    /// <summary>
    /// vLLM's Grafana dashboard, <c>examples/observability/prometheus_grafana/grafana.json</c> (the
    /// copy published at docs.vllm.ai/en/latest/examples/observability/prometheus_grafana): every
    /// series its panels select, each filtered on <c>model_name="$model_name"</c>. The model picker is
    /// <c>label_values({__name__=~"vllm:.*"}, model_name)</c>.
    /// </summary>
    private static readonly (string Series, string Type)[] GrafanaDashboard =
    [
        ("vllm:e2e_request_latency_seconds_bucket", "histogram"),
        ("vllm:e2e_request_latency_seconds_sum", "histogram"),
        ("vllm:e2e_request_latency_seconds_count", "histogram"),
        ("vllm:prompt_tokens_total", "counter"),
        ("vllm:generation_tokens_total", "counter"),
        ("vllm:inter_token_latency_seconds_bucket", "histogram"),
        ("vllm:inter_token_latency_seconds_sum", "histogram"),
        ("vllm:inter_token_latency_seconds_count", "histogram"),
        ("vllm:request_time_per_output_token_seconds_bucket", "histogram"),
        ("vllm:request_time_per_output_token_seconds_sum", "histogram"),
        ("vllm:request_time_per_output_token_seconds_count", "histogram"),
        ("vllm:num_requests_running", "gauge"),
        ("vllm:num_requests_waiting", "gauge"),
        ("vllm:time_to_first_token_seconds_bucket", "histogram"),
        ("vllm:time_to_first_token_seconds_sum", "histogram"),
        ("vllm:time_to_first_token_seconds_count", "histogram"),
        ("vllm:kv_cache_usage_perc", "gauge"),
        ("vllm:request_prompt_tokens_bucket", "histogram"),
        ("vllm:request_generation_tokens_bucket", "histogram"),
        ("vllm:request_success_total", "counter"),
        ("vllm:request_queue_time_seconds_sum", "histogram"),
        ("vllm:request_prefill_time_seconds_sum", "histogram"),
        ("vllm:request_decode_time_seconds_sum", "histogram"),
        ("vllm:request_max_num_generation_tokens_sum", "histogram"),
    ];

    /// <summary>
    /// Gateway API Inference Extension, <c>docs/proposals/003-model-server-protocol/README.md</c>: the
    /// vLLM names in its metrics table (TotalQueuedRequests, TotalRunningRequests, KVCacheUtilization),
    /// which the protocol requires to be gauges; also its optional <c>vllm:cache_config_info</c>, read for
    /// the labels <c>block_size</c> and <c>num_gpu_blocks</c>. The LoRA-only <c>vllm:lora_requests_info</c>
    /// is not served (see EngineMetrics).
    /// </summary>
    private static readonly string[] InferenceGatewayGauges =
        ["vllm:num_requests_waiting", "vllm:num_requests_running", "vllm:kv_cache_usage_perc"];

    /// <summary>
    /// KEDA Prometheus triggers written for vLLM: vllm-project/production-stack
    /// <c>docs/source/use_cases/autoscaling-keda.rst</c> (<c>vllm:num_requests_waiting</c>) and KServe's
    /// <c>docs/model-serving/generative-inference/autoscaling/autoscaling.md</c> (<c>vllm:num_requests_running</c>).
    /// </summary>
    private static readonly string[] KedaTriggers = ["vllm:num_requests_waiting", "vllm:num_requests_running"];

    /// <summary>Bucket bounds of vLLM v1 (<c>vllm/v1/metrics/loggers.py</c>); token histograms use its 1-2-5 series up to max_model_len.</summary>
    private static readonly Dictionary<string, double[]> VllmBuckets = new()
    {
        ["vllm:time_to_first_token_seconds"] = [0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0, 40.0, 80.0, 160.0, 640.0, 2560.0],
        ["vllm:inter_token_latency_seconds"] = [0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0, 40.0, 80.0],
        ["vllm:request_time_per_output_token_seconds"] = [0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0, 40.0, 80.0],
        ["vllm:e2e_request_latency_seconds"] = RequestLatency,
        ["vllm:request_queue_time_seconds"] = RequestLatency,
        ["vllm:request_inference_time_seconds"] = RequestLatency,
        ["vllm:request_prefill_time_seconds"] = RequestLatency,
        ["vllm:request_decode_time_seconds"] = RequestLatency,
        ["vllm:iteration_tokens_total"] = [1, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384],
        ["vllm:request_params_n"] = [1, 2, 5, 10, 20],
        // The fixture serves with --max-model-len 256.
        ["vllm:request_prompt_tokens"] = [1, 2, 5, 10, 20, 50, 100, 200],
        ["vllm:request_generation_tokens"] = [1, 2, 5, 10, 20, 50, 100, 200],
        ["vllm:request_max_num_generation_tokens"] = [1, 2, 5, 10, 20, 50, 100, 200],
        ["vllm:request_params_max_tokens"] = [1, 2, 5, 10, 20, 50, 100, 200],
    };

    private static double[] RequestLatency => [0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0, 120.0, 240.0, 480.0, 960.0, 1920.0, 7680.0];

    [Fact]
    public async Task Every_series_the_vllm_grafana_dashboard_queries_is_served_with_its_type_and_labels()
    {
        await ServeAFewRequestsAsync();
        var scrape = await ScrapeAsync();

        foreach (var (series, type) in GrafanaDashboard)
        {
            Assert.True(scrape.TypeOf(series) == type, $"{series}: served as {scrape.TypeOf(series) ?? "nothing"}, the dashboard reads a {type}");
            var ours = scrape.Samples.Where(s => s.Name == series && s.Labels.GetValueOrDefault("model_name") == ServerFixture.ModelName).ToList();
            Assert.True(ours.Count > 0, $"{series}{{model_name=\"{ServerFixture.ModelName}\"}} is missing from /metrics");
            Assert.All(ours, s => Assert.Equal("0", s.Labels["engine"]));
            if (series.EndsWith("_bucket", StringComparison.Ordinal))
                Assert.Contains(ours, s => s.Labels.GetValueOrDefault("le") == "+Inf");
        }

        // The "Finish Reason" panel sums by finished_reason; vLLM's values are its FinishReason names.
        var reasons = scrape.Samples.Where(s => s.Name == "vllm:request_success_total").Select(s => s.Labels["finished_reason"]).ToHashSet();
        Assert.Superset(new HashSet<string> { "stop", "length", "abort" }, reasons);
    }

    [Fact]
    public async Task The_inference_gateway_reads_the_kv_cache_configuration()
    {
        var info = Assert.Single((await ScrapeAsync()).Samples, s => s.Name == "vllm:cache_config_info");
        Assert.Equal(1, info.Value);
        Assert.Equal("16", info.Labels["block_size"]);
        Assert.True(int.Parse(info.Labels["num_gpu_blocks"], CultureInfo.InvariantCulture) > 1, "num_gpu_blocks");
        Assert.Equal("0", info.Labels["engine"]);
    }

    [Fact]
    public async Task The_inference_gateway_and_keda_read_load_gauges_that_follow_a_running_request()
    {
        await WaitUntilIdleAsync();
        var idle = await ScrapeAsync();
        foreach (var name in InferenceGatewayGauges.Concat(KedaTriggers))
        {
            Assert.True(idle.TypeOf(name) == "gauge", $"{name}: served as {idle.TypeOf(name) ?? "nothing"}, read as a gauge");
            Assert.Single(idle.Samples, s => s.Name == name);
        }
        Assert.Equal(0, idle.Value("vllm:num_requests_running"));
        Assert.Equal(0, idle.Value("vllm:num_requests_waiting"));

        // Hold one streamed request open past its first token: the gauges an autoscaler and the
        // endpoint picker read must see it running and holding KV-cache blocks.
        using var client = server.CreateClient();
        using var request = new HttpRequestMessage(HttpMethod.Post, "/v1/completions")
        {
            Content = new StringContent("""{"prompt": "A long stream to watch", "max_tokens": 200, "temperature": 0, "ignore_eos": true, "stream": true}""", Encoding.UTF8, "application/json"),
        };
        using (var response = await client.SendAsync(request, HttpCompletionOption.ResponseHeadersRead, TestContext.Current.CancellationToken))
        {
            response.EnsureSuccessStatusCode();
            using var reader = new StreamReader(await response.Content.ReadAsStreamAsync(TestContext.Current.CancellationToken));
            string? line;
            while ((line = await reader.ReadLineAsync(TestContext.Current.CancellationToken)) is not null && !line.StartsWith("data: {", StringComparison.Ordinal))
            {
            }
            Assert.NotNull(line);

            var busy = await ScrapeAsync();
            Assert.Equal(1, busy.Value("vllm:num_requests_running"));
            Assert.Equal(0, busy.Value("vllm:num_requests_waiting"));
            Assert.InRange(busy.Value("vllm:kv_cache_usage_perc"), double.Epsilon, 1);
        }

        // Leaving the stream aborts the request and frees its blocks.
        await WaitUntilIdleAsync();
        Assert.Equal(0, (await ScrapeAsync()).Value("vllm:kv_cache_usage_perc"));
    }

    [Fact]
    public async Task Histogram_buckets_are_vllms()
    {
        var scrape = await ScrapeAsync();
        foreach (var (family, bounds) in VllmBuckets)
        {
            Assert.True(scrape.TypeOf(family + "_bucket") == "histogram", $"{family}: served as {scrape.TypeOf(family + "_bucket") ?? "nothing"}, vLLM's is a histogram");
            var served = scrape.Samples
                .Where(s => s.Name == family + "_bucket" && s.Labels["le"] != "+Inf")
                .Select(s => double.Parse(s.Labels["le"], CultureInfo.InvariantCulture))
                .ToArray();
            Assert.True(bounds.SequenceEqual(served), $"{family}: served le={string.Join(",", served)}, vLLM has {string.Join(",", bounds)}");
        }
    }

    [Fact]
    public async Task Request_histograms_observe_what_vllm_observes()
    {
        await WaitUntilIdleAsync();
        var before = await ScrapeAsync();
        var served = await ServeAFewRequestsAsync();
        await WaitUntilIdleAsync();
        var after = await ScrapeAsync();
        double Delta(string name, string? reason = null) => after.Value(name, reason) - before.Value(name, reason);

        Assert.Equal(3, Delta("vllm:e2e_request_latency_seconds_count"));
        Assert.Equal(3, Delta("vllm:request_params_n_count"));
        Assert.Equal(served.Sum(r => r.N), Delta("vllm:request_params_n_sum"));
        // The chat request leaves max_tokens unset: vLLM records the rest of the context.
        Assert.Equal(5 + 3 + (server.MaxModelLen - served[2].PromptTokens), Delta("vllm:request_params_max_tokens_sum"));
        Assert.Equal(3, Delta("vllm:request_params_max_tokens_count"));
        // The longest sample of each request: the n = 2 request's samples have 3 tokens each (ignore_eos,
        // max_tokens 3), so it adds 3, not their sum of 6.
        Assert.Equal(3, Delta("vllm:request_max_num_generation_tokens_count"));
        Assert.Equal(6, served[1].CompletionTokens);
        Assert.Equal(served[0].CompletionTokens + 3 + served[2].CompletionTokens, Delta("vllm:request_max_num_generation_tokens_sum"));
        Assert.Equal(served.Sum(r => r.CompletionTokens), Delta("vllm:request_generation_tokens_sum"));
        Assert.Equal(3, Delta("vllm:request_time_per_output_token_seconds_count"));
        Assert.True(Delta("vllm:request_time_per_output_token_seconds_sum") > 0);
        Assert.Equal(2 + (served[2].FinishReason == "length" ? 1 : 0), Delta("vllm:request_success_total", "length"));
        // Each step that produced output observes its prompt plus generated tokens, as vLLM does.
        Assert.Equal(Delta("vllm:prompt_tokens_total") + Delta("vllm:generation_tokens_total"), Delta("vllm:iteration_tokens_total_sum"));
        Assert.Equal(served.Sum(r => r.CompletionTokens), Delta("vllm:generation_tokens_total"));
    }

    private sealed record Served(int N, int PromptTokens, int CompletionTokens, string FinishReason);

    /// <summary>A greedy n=1 completion, a sampled n=2 one, and a chat with no max_tokens.</summary>
    private async Task<Served[]> ServeAFewRequestsAsync()
    {
        using var client = server.CreateClient();
        return
        [
            await PostAsync(client, "/v1/completions", """{"prompt": "Dashboards read this", "max_tokens": 5, "temperature": 0, "ignore_eos": true}""", 1),
            await PostAsync(client, "/v1/completions", """{"prompt": "Two samples", "max_tokens": 3, "n": 2, "temperature": 0.8, "seed": 3, "ignore_eos": true}""", 2),
            await PostAsync(client, "/v1/chat/completions", """{"messages": [{"role": "user", "content": "Hi"}], "temperature": 0}""", 1),
        ];
    }

    private static async Task<Served> PostAsync(HttpClient client, string path, string json, int n)
    {
        var body = await HttpApiTests.PostOkAsync(client, path, json);
        var usage = body["usage"]!;
        var reason = body["choices"]![0]!["finish_reason"]!.GetValue<string>();
        return new Served(n, usage["prompt_tokens"]!.GetValue<int>(), usage["completion_tokens"]!.GetValue<int>(), reason);
    }

    private async Task WaitUntilIdleAsync()
    {
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(30);
        while (true)
        {
            var scrape = await ScrapeAsync();
            if (scrape.Value("vllm:num_requests_running") == 0 && scrape.Value("vllm:num_requests_waiting") == 0)
                return;
            Assert.True(DateTime.UtcNow < deadline, "the engine did not go idle within 30 s");
            await Task.Delay(10);
        }
    }

    private async Task<Scrape> ScrapeAsync()
    {
        // /metrics is a public probe: Prometheus scrapes it without the API key.
        using var client = server.CreateClient(authorized: false);
        using var response = await client.GetAsync("/metrics");
        response.EnsureSuccessStatusCode();
        Assert.StartsWith("text/plain", response.Content.Headers.ContentType?.MediaType ?? "", StringComparison.Ordinal);
        return Scrape.Parse(await response.Content.ReadAsStringAsync());
    }

    private sealed record Sample(string Name, Dictionary<string, string> Labels, double Value);

    /// <summary>Prometheus text exposition (format 0.0.4), parsed the way a scraper reads it.</summary>
    private sealed class Scrape
    {
        private readonly Dictionary<string, string> _types = [];

        public List<Sample> Samples { get; } = [];

        /// <summary>The family type a series belongs to: <c>x_bucket</c>, <c>x_sum</c> and <c>x_count</c>
        /// belong to histogram <c>x</c>; a counter's TYPE line may name it with or without <c>_total</c>.</summary>
        public string? TypeOf(string series)
        {
            if (_types.TryGetValue(series, out var type))
                return type;
            foreach (var suffix in (ReadOnlySpan<string>)["_bucket", "_sum", "_count", "_total"])
            {
                if (series.EndsWith(suffix, StringComparison.Ordinal) && _types.TryGetValue(series[..^suffix.Length], out type))
                    return type;
            }
            return null;
        }

        /// <summary>The one sample of <paramref name="name"/> for the served model (and finish reason).</summary>
        public double Value(string name, string? finishedReason = null) => Samples.Single(s =>
            s.Name == name
            && s.Labels.GetValueOrDefault("model_name") == ServerFixture.ModelName
            && s.Labels.GetValueOrDefault("finished_reason") == finishedReason).Value;

        public static Scrape Parse(string text)
        {
            var scrape = new Scrape();
            foreach (var line in text.Split('\n'))
            {
                if (line.StartsWith("# TYPE ", StringComparison.Ordinal))
                {
                    var parts = line.Split(' ');
                    scrape._types[parts[2]] = parts[3];
                }
                else if (line.Length > 0 && line[0] != '#')
                {
                    scrape.Samples.Add(ParseSample(line));
                }
            }
            return scrape;
        }

        private static Sample ParseSample(string line)
        {
            var labels = new Dictionary<string, string>();
            var brace = line.IndexOf('{');
            var space = line.LastIndexOf(' ');
            var value = double.Parse(line[(space + 1)..], CultureInfo.InvariantCulture);
            if (brace < 0)
                return new Sample(line[..space], labels, value);

            var i = brace + 1;
            while (line[i] != '}')
            {
                var eq = line.IndexOf('=', i);
                var key = line[i..eq];
                var text = new StringBuilder();
                for (i = eq + 2; line[i] != '"'; i++)
                {
                    // Label values escape backslash, double quote and newline with a backslash.
                    if (line[i] == '\\')
                        text.Append(line[++i] == 'n' ? '\n' : line[i]);
                    else
                        text.Append(line[i]);
                }
                labels[key] = text.ToString();
                i++;
                if (line[i] == ',')
                    i++;
            }
            return new Sample(line[..brace], labels, value);
        }
    }
}
