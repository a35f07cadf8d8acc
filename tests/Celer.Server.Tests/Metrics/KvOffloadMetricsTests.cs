using System.Globalization;
using System.Text.Json.Nodes;
using Celer.Server.Tests.Integration;
using Celer.Server.Tests.Support;

namespace Celer.Server.Tests.Metrics;

/// <summary>
/// The host KV tier's metrics on the real <c>/metrics</c>, under vLLM's offloading-connector names: a prompt pushed out of
/// a small device pool by two others comes back from the host tier, and the bytes each way, the tokens looked up and
/// loaded, and the tier's block lookups and usage say so. A server without the tier has none of them.
/// </summary>
public sealed class KvOffloadMetricsTests
{
    // models/celer-tiny-py on the CPU: keys and values in fp32, 6 layers, 2 KV heads of 32, 16 tokens a block.
    private const long BlockBytes = 2L * 6 * 16 * 2 * 32 * sizeof(float);

    private static string Post(params int[] tokens) =>
        $$"""{"prompt": [{{string.Join(",", tokens)}}], "max_tokens": 2, "temperature": 0}""";

    [Fact]
    public async Task A_returning_prompt_is_loaded_from_the_host_tier_and_counted()
    {
        // 18 device blocks: one 256-token sequence (the least the engine takes) and a block more.
        await using TinyPyServer server = await TinyPyServer.StartAsync(kvCacheMemory: 18 * BlockBytes, kvOffloadSize: 64 * BlockBytes / (double)(1L << 30));
        using HttpClient client = server.CreateClient();
        int[] first = [.. Enumerable.Range(0, 100).Select(i => (i * 37 + 5) % 8000)];
        await HttpApiTests.PostOkAsync(client, "/v1/completions", Post(first));
        for (int k = 0; k < 2; k++)
        {
            await HttpApiTests.PostOkAsync(client, "/v1/completions", Post([.. Enumerable.Range(0, 200).Select(i => (i * 53 + k * 1000 + 11) % 8000)]));
        }
        JsonNode returning = await HttpApiTests.PostOkAsync(client, "/v1/completions", Post([.. first, 1, 2, 3]));
        Assert.Equal(2, returning["usage"]!["completion_tokens"]!.GetValue<int>());

        string metrics = await client.GetStringAsync(new Uri("/metrics", UriKind.Relative), TestContext.Current.CancellationToken);

        // The returning prompt's six full blocks (96 tokens) came back from the host tier.
        Assert.Equal(96, Value(metrics, "vllm:external_prefix_cache_hits_total"));
        Assert.Equal(6 * BlockBytes, Value(metrics, "vllm:kv_offload_load_bytes_total"));
        double stored = Value(metrics, "vllm:kv_offload_store_bytes_total");
        Assert.True(stored >= 6 * BlockBytes && stored % BlockBytes == 0, $"stored {stored} bytes");
        Assert.True(Value(metrics, "vllm:external_prefix_cache_queries_total") >= 103);
        Assert.True(Value(metrics, "vllm:kv_offload_cpu_block_hit_total") >= 6);
        Assert.True(Value(metrics, "vllm:kv_offload_cpu_block_lookup_total") >= Value(metrics, "vllm:kv_offload_cpu_block_hit_total"));
        Assert.Equal(0, Value(metrics, "vllm:kv_offload_block_eviction_total"));
        double usage = Value(metrics, "vllm:kv_offload_cpu_cache_usage_perc");
        Assert.InRange(usage, 6.0 / 64, 1);
        Assert.Contains("# TYPE vllm:kv_offload_load_bytes_total counter", metrics, StringComparison.Ordinal);
        Assert.Contains("# TYPE vllm:kv_offload_cpu_cache_usage_perc gauge", metrics, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Without_a_host_tier_there_are_no_offload_metrics()
    {
        await using TinyPyServer server = await TinyPyServer.StartAsync();
        using HttpClient client = server.CreateClient();
        string metrics = await client.GetStringAsync(new Uri("/metrics", UriKind.Relative), TestContext.Current.CancellationToken);
        Assert.DoesNotContain("vllm:kv_offload", metrics, StringComparison.Ordinal);
        Assert.DoesNotContain("vllm:external_prefix_cache", metrics, StringComparison.Ordinal);
    }

    /// <summary>The value of the model's series of <paramref name="name"/>.</summary>
    private static double Value(string metrics, string name)
    {
        string line = metrics.Split('\n').Single(l => l.StartsWith(name + "{", StringComparison.Ordinal));
        return double.Parse(line[(line.LastIndexOf(' ') + 1)..], CultureInfo.InvariantCulture);
    }
}
