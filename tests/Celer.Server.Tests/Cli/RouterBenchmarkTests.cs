using System.Text.Json.Nodes;
using Celer.Router;
using Celer.Server.Tests.Integration;
using Celer.Server.Tests.Router;
using Celer.Server.Tests.Support;

namespace Celer.Server.Tests.Cli;

/// <summary>
/// <c>celer bench router</c> against a real router in front of two real servers (the default model, CPU), at tiny sizes:
/// its report has both paths of both levels with every request answered, the added latency and the router's CPU time per
/// request; and a backend the router is not in front of is refused with one line before any load.
/// </summary>
public sealed class RouterBenchmarkTests : IDisposable
{
    private readonly string _outputJson = Path.Combine(Path.GetTempPath(), $"celer-bench-router-{Guid.NewGuid():N}.json");

    public void Dispose() => File.Delete(_outputJson);

    private string[] BenchArgs(RouterUnderTest router, params TinyPyServer[] backends) =>
    [
        "bench", "router", "--router-url", router.Client.BaseAddress!.ToString(),
        .. backends.SelectMany(b => new[] { "--backend-url", b.BaseAddress.ToString() }),
        "--concurrency", "2", "--request-rate", "50", "--duration", "0.5", "--rounds", "1", "--warmup", "0",
        // The router runs in this process, so its CPU time is this process's.
        "--router-pid", $"{Environment.ProcessId}", "--output-json", _outputJson,
    ];

    [Fact]
    public async Task It_measures_both_paths_at_each_level_and_writes_its_report()
    {
        await using var a = await TinyPyServer.StartAsync();
        await using var b = await TinyPyServer.StartAsync();
        await using var router = await RouterUnderTest.StartAsync([new(a.BaseAddress, null), new(b.BaseAddress, null)], RoutingLogic.RoundRobin);

        var (exitCode, output, error) = await CelerCli.RunAsync(BenchArgs(router, a, b));

        Assert.True(exitCode == 0, $"exit {exitCode}: {error}");
        Assert.Contains($"Results written to {_outputJson}", output, StringComparison.Ordinal);
        var report = JsonNode.Parse(await File.ReadAllTextAsync(_outputJson, TestContext.Current.CancellationToken))!;
        Assert.Equal("router", (string?)report["kind"]);
        Assert.Equal(ServerFixture.ModelName, (string?)report["model"]);
        Assert.Equal("/tokenize", (string?)report["parameters"]!["endpoint"]);
        Assert.True((bool)report["parameters"]!["router_cpu_measured"]!);

        var levels = report["results"]!["levels"]!.AsArray();
        Assert.Equal(2, levels.Count);
        Assert.Equal(2, (int)levels[0]!["concurrency"]!);
        Assert.Equal(50, (double)levels[1]!["request_rate"]!);
        foreach (var level in levels)
        {
            foreach (var path in new[] { "direct", "router" })
            {
                var summary = level![path]!;
                Assert.True((int)summary["requests"]! > 0, $"{level.ToJsonString()}: no {path} request answered");
                Assert.True((int)summary["failed"]! == 0, $"{path}: {summary["first_error"]}");
                Assert.InRange((double)summary["median_latency_ms"]!, 1e-3, 10_000);
            }
            // The difference of the two medians, whatever its sign on a busy machine.
            Assert.Equal((double)level!["router"]!["median_latency_ms"]! - (double)level["direct"]!["median_latency_ms"]!,
                (double)level["added_latency_p50_ms"]!, 1e-9);
            Assert.True((double)level["router_cpu_us_per_request"]! > 0, level.ToJsonString());
        }
        Assert.True((double)report["results"]!["max_router_requests_per_second"]! > 0);
    }

    [Fact]
    public async Task A_backend_the_router_is_not_in_front_of_is_refused_in_one_line()
    {
        await using var routed = await TinyPyServer.StartAsync();
        await using var elsewhere = await TinyPyServer.StartAsync(servedModelName: "another-model");
        await using var router = await RouterUnderTest.StartAsync([new(routed.BaseAddress, null)], RoutingLogic.RoundRobin);

        var (exitCode, output, error) = await CelerCli.RunAsync(BenchArgs(router, routed, elsewhere));

        Assert.Equal(1, exitCode);
        var line = Assert.Single(error.Split('\n', StringSplitOptions.RemoveEmptyEntries));
        Assert.StartsWith($"error: {new Uri(elsewhere.BaseAddress, "tokenize")}: HTTP 404", line, StringComparison.Ordinal);
        Assert.Contains($"The model `{ServerFixture.ModelName}` does not exist.", line, StringComparison.Ordinal);
        Assert.DoesNotContain("Results written", output, StringComparison.Ordinal);
        Assert.False(File.Exists(_outputJson));
    }
}
