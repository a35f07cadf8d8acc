using System.Text.Json.Nodes;
using Celer.Server.Tests.Support;
using Celer.Server.Tests.Integration;

namespace Celer.Server.Tests.Cli;

/// <summary>
/// Smoke tests of <c>celer bench throughput</c> and <c>celer bench serve</c> on the CPU with the default
/// model at tiny sizes: each run writes its JSON report with the fields vLLM's benchmarks report, and the
/// token counts are exact (random prompts of fixed length, <c>ignore_eos</c>).
/// </summary>
[Collection(ServerCollection.Name)]
public sealed class BenchCommandTests(ServerFixture server) : IDisposable
{
    private const int NumPrompts = 4;
    private const int InputLen = 8;
    private const int OutputLen = 4;

    private readonly string _outputJson = Path.Combine(Path.GetTempPath(), $"celer-bench-{Guid.NewGuid():N}.json");

    public void Dispose() => File.Delete(_outputJson);

    private async Task<JsonNode> RunAsync(params string[] args)
    {
        var (exitCode, output, error) = await CelerCli.RunAsync([.. args, "--output-json", _outputJson]);
        Assert.True(exitCode == 0, $"celer {string.Join(' ', args)} exited with {exitCode}: {error}");
        Assert.Contains($"Results written to {_outputJson}", output, StringComparison.Ordinal);
        var report = JsonNode.Parse(await File.ReadAllTextAsync(_outputJson))!;
        foreach (var field in new[] { "kind", "model", "date", "machine", "os", "processor_count", "runtime", "device", "parameters", "results" })
            Assert.True(report.AsObject().ContainsKey(field), $"the report lacks '{field}'");
        return report;
    }

    private static double Positive(JsonNode results, string name)
    {
        var value = results[name]!.GetValue<double>();
        Assert.True(value > 0 && double.IsFinite(value), $"{name} = {value}");
        return value;
    }

    [Fact]
    public async Task Without_output_json_a_bench_writes_no_file()
    {
        string defaultFolder = Path.Combine(Environment.CurrentDirectory, "benchmarks");
        var (exitCode, output, error) = await CelerCli.RunAsync("bench", "throughput", "--model", ServerFixture.DefaultModel,
            "--num-prompts", "2", "--input-len", $"{InputLen}", "--output-len", $"{OutputLen}", "--max-num-seqs", "4", "--max-model-len", "64");

        Assert.True(exitCode == 0, error);
        Assert.Contains("Throughput:", output, StringComparison.Ordinal);
        Assert.DoesNotContain("Results written", output, StringComparison.Ordinal);
        Assert.False(Directory.Exists(defaultFolder), $"{defaultFolder} was created");
    }

    [Fact]
    public async Task Bench_throughput_writes_its_report()
    {
        var report = await RunAsync("bench", "throughput", "--model", ServerFixture.DefaultModel,
            "--num-prompts", $"{NumPrompts}", "--input-len", $"{InputLen}", "--output-len", $"{OutputLen}", "--max-num-seqs", "4", "--max-model-len", "64");

        Assert.Equal("throughput", report["kind"]!.GetValue<string>());
        var results = report["results"]!;
        Assert.Equal(NumPrompts, results["num_requests"]!.GetValue<int>());
        Assert.Equal(NumPrompts * (InputLen + OutputLen), results["total_num_tokens"]!.GetValue<long>());
        var elapsed = Positive(results, "elapsed_time");
        Assert.Equal(NumPrompts / elapsed, Positive(results, "requests_per_second"), 1e-6);
        Assert.Equal(NumPrompts * (InputLen + OutputLen) / elapsed, Positive(results, "tokens_per_second"), 1e-6);
        Assert.Equal(NumPrompts * OutputLen / elapsed, Positive(results, "output_tokens_per_second"), 1e-6);
        Assert.Equal(NumPrompts, report["parameters"]!["num_prompts"]!.GetValue<int>());
    }

    /// <summary>
    /// Three conversations on nine device blocks of the default model (each 16 tokens, 48 KiB in fp32): each returning
    /// turn finds its prefix evicted, so the run with a 64-block host tier loads it back, with the same greedy output.
    /// </summary>
    [Fact]
    public async Task Bench_multi_turn_compares_the_host_tier_with_recompute()
    {
        const long blockBytes = 2L * 6 * 16 * 2 * 32 * sizeof(float);
        var report = await RunAsync("bench", "multi-turn", "--model", ServerFixture.DefaultModel, "--num-conversations", "3", "--num-turns", "2",
            "--prefix-len", "64", "--turn-len", "8", "--output-len", "4", "--max-model-len", "128", "--max-num-seqs", "4",
            "--kv-cache-memory", $"{9 * blockBytes}", "--kv-offload-size", (64 * blockBytes / (double)(1L << 30)).ToString("R", System.Globalization.CultureInfo.InvariantCulture));

        Assert.Equal("multi-turn", report["kind"]!.GetValue<string>());
        var results = report["results"]!;
        Assert.True(results["offload"]!["outputs_identical_to_recompute"]!.GetValue<bool>());
        Assert.Equal(3, results["offload"]!["num_returning_turns"]!.GetValue<int>());
        // Each returning turn loads the previous prompt's four full blocks.
        Assert.Equal(3 * 64, results["offload"]!["host_tier"]!["loaded_tokens"]!.GetValue<long>());
        Assert.Equal(0, results["recompute"]!["prefix_cache_hit_tokens"]!.GetValue<long>());
        foreach (var run in new[] { "recompute", "offload" })
        {
            Positive(results[run]!, "mean_first_ttft_ms");
            Positive(results[run]!, "p90_returning_ttft_ms");
        }
        Positive(results, "returning_ttft_speedup");
        Assert.Equal(3, report["parameters"]!["num_conversations"]!.GetValue<int>());
    }

    [Fact]
    public async Task Bench_multi_turn_needs_a_host_tier_to_compare()
    {
        var (exitCode, _, error) = await CelerCli.RunAsync("bench", "multi-turn", "--model", ServerFixture.DefaultModel, "--max-model-len", "128");
        Assert.Equal(1, exitCode);
        Assert.Contains("--kv-offload-size", error, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Bench_serve_against_a_live_server_writes_its_report()
    {
        var report = await RunAsync("bench", "serve", "--base-url", server.BaseAddress.ToString(), "--api-key", ServerFixture.ApiKey,
            "--model", ServerFixture.DefaultModel, "--num-prompts", $"{NumPrompts}", "--random-input-len", $"{InputLen}", "--random-output-len", $"{OutputLen}",
            "--max-concurrency", "2");

        Assert.Equal("serve", report["kind"]!.GetValue<string>());
        var results = report["results"]!;
        Assert.True(results["failed"]!.GetValue<int>() == 0, $"failed requests: {results["first_error"]}");
        Assert.Equal(NumPrompts, results["completed"]!.GetValue<int>());
        Assert.Equal(NumPrompts * InputLen, results["total_input_tokens"]!.GetValue<long>());
        Assert.Equal(NumPrompts * OutputLen, results["total_output_tokens"]!.GetValue<long>());
        Assert.Equal(ServerFixture.ModelName, report["parameters"]!["served_model_name"]!.GetValue<string>());
        Positive(results, "duration");
        Positive(results, "request_throughput");
        Positive(results, "output_throughput");
        foreach (var metric in new[] { "ttft", "tpot", "itl", "e2el" })
        {
            foreach (var stat in new[] { "mean", "median", "p99" })
                Positive(results, $"{stat}_{metric}_ms");
        }
        // Every request's first token comes before its last.
        Assert.True(results["mean_ttft_ms"]!.GetValue<double>() < results["mean_e2el_ms"]!.GetValue<double>());
    }
}
