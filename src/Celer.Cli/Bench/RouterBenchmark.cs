using System.CommandLine;
using System.Globalization;
using System.Net.Http.Headers;
using System.Text;
using System.Text.Json.Nodes;

namespace Celer.Cli.Bench;

/// <summary>
/// <c>celer bench router</c>: what a running <c>celer router</c> adds to each request, and the request rate it sustains.
/// The same small request (<c>/tokenize</c>, or a one-token completion) goes straight to the backends (in turn) and through
/// the router, from closed-loop clients at each concurrency (the rate each path sustains) and then at fixed request rates
/// (each path's latency at that load), in short phases that alternate between the two paths (direct, router, router,
/// direct, ...), so both see the same machine: drift, other processes and JIT warm-up fall on both alike.
/// The added latency is the difference of the two paths' percentiles. The CPU time of this process, of the router and of
/// the backends (given by process id) and of the whole machine is read around every phase, because on a small machine the
/// load generator, the router and the backends share the cores: the router's CPU time per request says what it could
/// forward with the cores to itself, whatever the others took.
/// </summary>
internal static class RouterBenchmark
{
    /// <summary>What each request asks: the endpoint, its body's fields, and the answer's field two paths must agree on.</summary>
    private sealed record Workload(string Path, Func<string, JsonObject> Body, Func<JsonNode, JsonNode?> Answer);

    private static readonly Dictionary<string, Workload> Workloads = new(StringComparer.Ordinal)
    {
        // No engine step: the backend tokenizes and answers, so the router's share of the time is as large as it gets.
        ["tokenize"] = new("tokenize", prompt => new JsonObject { ["prompt"] = prompt }, answer => answer["tokens"]),
        // Through the scheduler and one forward pass: the backend's time dominates, as in real use.
        ["completions"] = new("v1/completions",
            prompt => new JsonObject { ["prompt"] = prompt, ["max_tokens"] = 1, ["temperature"] = 0 },
            answer => answer["choices"]?[0]?["text"]),
    };

    private enum PathKind { Direct, Router }

    /// <summary>One load level: closed loop at a concurrency, or open loop at a request rate (<see cref="HttpLoad"/>).</summary>
    /// <param name="Run">One phase of this load on a path; the seed is the round's, so both paths of a round see the same arrivals.</param>
    private sealed record Level(string Name, JsonNode Value, string Label, Func<HttpLoad, TimeSpan, int, CancellationToken, Task<HttpLoad.Phase>> Run);

    public static Command Create()
    {
        var routerUrl = new Option<string>("--router-url") { Description = "The router under test.", DefaultValueFactory = _ => "http://127.0.0.1:8001" };
        var backendUrls = new Option<string[]>("--backend-url")
        {
            Description = "A backend the router routes over, asked directly for the baseline; repeat for each (they are asked in turn, as round robin spreads them).",
            Required = true,
        };
        var endpoint = new Option<string>("--endpoint")
        {
            Description = "tokenize: POST /tokenize (no engine step; the router's share is largest); completions: a one-token /v1/completions.",
            DefaultValueFactory = _ => "tokenize",
        }.AcceptOnlyFromAmong([.. Workloads.Keys]);
        var prompt = new Option<string>("--prompt") { Description = "The prompt of every request.", DefaultValueFactory = _ => "def fibonacci(n):" };
        var servedModel = new Option<string?>("--served-model-name") { Description = "Model to request (default: the router's one model)." };
        var apiKey = new Option<string?>("--api-key") { Description = "Bearer key (default: env CELER_API_KEY)." };
        var concurrencies = new Option<int[]>("--concurrency")
        {
            Description = "Closed-loop clients, one run per value: the rate each path sustains.",
            DefaultValueFactory = _ => [1, 4, 16, 64],
            AllowMultipleArgumentsPerToken = true,
        };
        var requestRates = new Option<double[]>("--request-rate")
        {
            Description = "Open-loop requests per second (Poisson arrivals), one run per value after the concurrencies: each path's latency at that load.",
            DefaultValueFactory = _ => [],
            AllowMultipleArgumentsPerToken = true,
        };
        var duration = new Option<double>("--duration") { Description = "Seconds measured per path at each level.", DefaultValueFactory = _ => 10 };
        var rounds = new Option<int>("--rounds") { Description = "Phases per path at each level, alternating with the other path's.", DefaultValueFactory = _ => 5 };
        var warmup = new Option<double>("--warmup") { Description = "Seconds of unmeasured load per path before each level's phases.", DefaultValueFactory = _ => 2 };
        var routerPid = new Option<int?>("--router-pid") { Description = "The router's process id, to measure its CPU time." };
        var backendPids = new Option<int[]>("--backend-pid") { Description = "A backend's process id, to measure its CPU time; repeat for each." };
        var outputJson = new Option<string?>("--output-json") { Description = "Write the results as JSON to this file (none are written without it)." };
        var command = new Command("router", "The latency a running celer router adds and the request rate it sustains, against its backends asked directly.");
        foreach (var option in new Option[] { routerUrl, backendUrls, endpoint, prompt, servedModel, apiKey, concurrencies, requestRates, duration, rounds, warmup, routerPid, backendPids, outputJson })
            command.Options.Add(option);

        command.SetAction((result, cancellationToken) => CliRunner.RunAsync(result, async () =>
        {
            var workload = Workloads[result.GetValue(endpoint)!];
            var router = BaseUrl("--router-url", result.GetValue(routerUrl)!);
            Uri[] backends = [.. result.GetValue(backendUrls)!.Select(url => BaseUrl("--backend-url", url))];
            int[] clientCounts = result.GetValue(concurrencies)!;
            double[] rates = result.GetValue(requestRates)!;
            if (clientCounts.Any(c => c < 1))
                throw new CliException("--concurrency: client counts must be at least 1.");
            if (rates.Any(r => !double.IsFinite(r) || r <= 0))
                throw new CliException("--request-rate: rates must be positive numbers of requests per second.");
            if (clientCounts.Length + rates.Length == 0)
                throw new CliException("Give at least one --concurrency or --request-rate.");
            Level[] levels =
            [
                .. clientCounts.Select(c => new Level("concurrency", c, $"{c} clients",
                    (load, length, _, token) => load.RunClosedLoopAsync(c, length, token))),
                .. rates.Select(r => new Level("request_rate", r, string.Create(CultureInfo.InvariantCulture, $"{r:0.##}/s"),
                    (load, length, seed, token) => load.RunOpenLoopAsync(r, length, seed, token))),
            ];
            var measured = Seconds("--duration", result.GetValue(duration), allowZero: false);
            var warmupLength = Seconds("--warmup", result.GetValue(warmup), allowZero: true);
            var roundCount = result.GetValue(rounds);
            if (roundCount < 1)
                throw new CliException($"--rounds {roundCount}: must be at least 1.");
            var phaseLength = measured / roundCount;

            using var cpu = new CpuAccounting(result.GetValue(routerPid) is { } pid ? [pid] : [], result.GetValue(backendPids) ?? []);
            using var http = new HttpClient(new SocketsHttpHandler { UseCookies = false, AllowAutoRedirect = false, PooledConnectionLifetime = Timeout.InfiniteTimeSpan })
            {
                Timeout = TimeSpan.FromSeconds(60),
            };
            var key = result.GetValue(apiKey) ?? Environment.GetEnvironmentVariable("CELER_API_KEY");
            if (!string.IsNullOrEmpty(key))
                http.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", key);

            string model;
            try
            {
                model = result.GetValue(servedModel) ?? await OnlyModelAsync(http, router, cancellationToken);
            }
            catch (HttpRequestException e)
            {
                throw new CliException($"{router}: {e.Message}");
            }
            var body = workload.Body(result.GetValue(prompt)!);
            body["model"] = model;
            var bodyBytes = Encoding.UTF8.GetBytes(body.ToJsonString());
            var loads = new Dictionary<PathKind, HttpLoad>
            {
                [PathKind.Direct] = new(http, [.. backends.Select(b => new Uri(b, workload.Path))], bodyBytes),
                [PathKind.Router] = new(http, [new Uri(router, workload.Path)], bodyBytes),
            };
            await CheckSameAnswerAsync(loads, backends, router, workload, cancellationToken);

            var output = result.InvocationConfiguration.Output;
            await output.WriteLineAsync($"{"load",-11} {"path",-6} {"req/s",9} {"p50 ms",8} {"p99 ms",8} {"router CPU us/req",17} {"cores: loadgen router backends machine",38}");
            var levelResults = new JsonArray();
            foreach (var load in levels)
            {
                foreach (var path in loads.Values)
                    await load.Run(path, warmupLength, -1, cancellationToken);
                var phases = new Dictionary<PathKind, List<(HttpLoad.Phase Phase, CpuAccounting.Sample Cpu)>> { [PathKind.Direct] = [], [PathKind.Router] = [] };
                for (var round = 0; round < roundCount; round++)
                {
                    // ABBA order: whatever drifts during a round (a JIT tier-up, a neighbour's build) weighs on both paths alike.
                    foreach (var path in round % 2 == 0 ? new[] { PathKind.Direct, PathKind.Router } : [PathKind.Router, PathKind.Direct])
                    {
                        var before = cpu.Read();
                        var phase = await load.Run(loads[path], phaseLength, round, cancellationToken);
                        phases[path].Add((phase, cpu.Read() - before));
                    }
                }
                var level = new JsonObject
                {
                    [load.Name] = load.Value.DeepClone(),
                    ["direct"] = Summarize(phases[PathKind.Direct], cpu),
                    ["router"] = Summarize(phases[PathKind.Router], cpu),
                };
                AddOverhead(level, cpu);
                levelResults.Add(level);
                foreach (var path in PathNames)
                {
                    var s = level[path]!;
                    var routerCpu = path == "router" && (double?)level["router_cpu_us_per_request"] is { } us ? $"{us,17:F1}" : new string(' ', 17);
                    await output.WriteLineAsync(string.Create(CultureInfo.InvariantCulture,
                        $"{load.Label,-11} {path,-6} {(double)s["requests_per_second"]!,9:F0} {(double?)s["median_latency_ms"] ?? double.NaN,8:F3} {(double?)s["p99_latency_ms"] ?? double.NaN,8:F3} {routerCpu} {Cores(s["cores"]!),38}"));
                }
                await output.WriteLineAsync(string.Create(CultureInfo.InvariantCulture,
                    $"{load.Label,-11} added  p50 {(double?)level["added_latency_p50_ms"] ?? double.NaN:F3} ms, p99 {(double?)level["added_latency_p99_ms"] ?? double.NaN:F3} ms"));
            }

            var results = new JsonObject { ["levels"] = levelResults };
            // The most the router sustained is a closed-loop figure: an open-loop level's rate is the one asked for.
            var closedLoop = levelResults.Where(l => l!["concurrency"] is not null).ToList();
            if (closedLoop.Count > 0)
            {
                var busiest = closedLoop.MaxBy(l => (double)l!["router"]!["requests_per_second"]!)!;
                results["max_router_requests_per_second"] = (double)busiest["router"]!["requests_per_second"]!;
                results["max_router_requests_per_second_concurrency"] = (int)busiest["concurrency"]!;
                var summary = string.Create(CultureInfo.InvariantCulture,
                    $"Most requests/s through the router: {(double)results["max_router_requests_per_second"]!:F0} (at {busiest["concurrency"]} clients)");
                if ((double?)busiest["router_cpu_us_per_request"] is { } routerCpuPerRequest)
                {
                    // The router's CPU cost at its busiest level, over every core of the machine: its rate with the cores to itself.
                    results["router_cpu_bound_requests_per_second"] = Environment.ProcessorCount * 1e6 / routerCpuPerRequest;
                    summary += string.Create(CultureInfo.InvariantCulture,
                        $"; its CPU time per request bounds it at {(double)results["router_cpu_bound_requests_per_second"]!:F0}/s on {Environment.ProcessorCount} cores");
                }
                await output.WriteLineAsync(summary);
            }

            var parameters = new JsonObject
            {
                ["router_url"] = router.ToString(),
                ["backend_urls"] = new JsonArray([.. backends.Select(b => (JsonNode)b.ToString())]),
                ["endpoint"] = "/" + workload.Path,
                ["request_body"] = JsonNode.Parse(bodyBytes),
                ["concurrency"] = new JsonArray([.. clientCounts.Select(c => (JsonNode)c)]),
                ["request_rate"] = new JsonArray([.. rates.Select(r => (JsonNode)r)]),
                ["duration"] = measured.TotalSeconds,
                ["rounds"] = roundCount,
                ["warmup"] = warmupLength.TotalSeconds,
                ["router_cpu_measured"] = cpu.MeasuresRouter,
                ["backend_cpu_measured"] = cpu.MeasuresBackends,
            };
            if (BenchmarkReport.Write("router", model, "cpu", parameters, results, result.GetValue(outputJson)) is { } written)
                await output.WriteLineAsync($"Results written to {written}");
            return 0;
        }));
        return command;
    }

    private static Uri BaseUrl(string flag, string text) =>
        Uri.TryCreate(text.TrimEnd('/') + "/", UriKind.Absolute, out var url) && (url.Scheme == Uri.UriSchemeHttp || url.Scheme == Uri.UriSchemeHttps)
            ? url
            : throw new CliException($"{flag} '{text}': not an http(s) URL.");

    private static TimeSpan Seconds(string flag, double seconds, bool allowZero) =>
        double.IsFinite(seconds) && (seconds > 0 || (allowZero && seconds == 0)) && seconds <= TimeSpan.FromDays(1).TotalSeconds
            ? TimeSpan.FromSeconds(seconds)
            : throw new CliException($"{flag} {seconds}: must be a {(allowZero ? "non-negative" : "positive")} number of seconds, at most a day.");

    /// <summary>The model the router serves, when the command names none: only one, else the choice is the user's.</summary>
    private static async Task<string> OnlyModelAsync(HttpClient http, Uri router, CancellationToken cancellationToken)
    {
        var models = JsonNode.Parse(await http.GetStringAsync(new Uri(router, "v1/models"), cancellationToken))?["data"] as JsonArray ?? [];
        var ids = models.Select(card => (string?)card?["id"]).OfType<string>().ToList();
        return ids.Count == 1 ? ids[0]
            : ids.Count == 0 ? throw new CliException($"{router} lists no model at /v1/models (no healthy backend?).")
            : throw new CliException($"{router} serves several models ({string.Join(", ", ids)}): name one with --served-model-name.");
    }

    /// <summary>
    /// Every backend and the router must give the same answer to the benchmark's request: otherwise the two paths do
    /// different work (a backend of another model, a router in front of other servers) and their difference means nothing.
    /// </summary>
    private static async Task CheckSameAnswerAsync(Dictionary<PathKind, HttpLoad> loads, Uri[] backends, Uri router, Workload workload, CancellationToken cancellationToken)
    {
        var viaRouter = await AskAsync(loads[PathKind.Router], new Uri(router, workload.Path), cancellationToken);
        var expected = workload.Answer(JsonNode.Parse(viaRouter)!)?.ToJsonString()
                       ?? throw new CliException($"The router's answer to /{workload.Path} has no answer field: {viaRouter}");
        foreach (var backend in backends)
        {
            var direct = await AskAsync(loads[PathKind.Direct], new Uri(backend, workload.Path), cancellationToken);
            var answer = workload.Answer(JsonNode.Parse(direct)!)?.ToJsonString();
            if (answer != expected)
                throw new CliException($"{backend} answers /{workload.Path} with {answer ?? direct}, the router with {expected}: is the router in front of these backends?");
        }
    }

    private static async Task<string> AskAsync(HttpLoad load, Uri target, CancellationToken cancellationToken)
    {
        try
        {
            return await load.AskAsync(target, cancellationToken);
        }
        catch (HttpRequestException e)
        {
            throw new CliException($"{target}: {e.Message}");
        }
    }

    /// <summary>One path's phases at one level, pooled: rate, latency percentiles, and the cores each party kept busy.</summary>
    private static JsonObject Summarize(List<(HttpLoad.Phase Phase, CpuAccounting.Sample Cpu)> phases, CpuAccounting cpu)
    {
        var latencies = phases.SelectMany(p => p.Phase.Latencies).ToList();
        var seconds = phases.Sum(p => p.Phase.Seconds);
        var summary = new JsonObject
        {
            ["requests"] = latencies.Count,
            ["failed"] = phases.Sum(p => p.Phase.Failed),
            ["seconds"] = seconds,
            ["requests_per_second"] = latencies.Count / seconds,
        };
        LatencyStats.AddSummary(summary, "latency", latencies, 90, 99);
        var used = phases.Select(p => p.Cpu).Aggregate((a, b) => new(
            a.LoadGenerator + b.LoadGenerator, a.Router + b.Router, a.Backends + b.Backends, a.Machine + b.Machine));
        // Cores kept busy on average: CPU seconds over wall seconds. "other" is what processes outside the benchmark took.
        var cores = new JsonObject { ["load_generator"] = used.LoadGenerator / seconds };
        if (cpu.MeasuresRouter)
            cores["router"] = used.Router / seconds;
        if (cpu.MeasuresBackends)
            cores["backends"] = used.Backends / seconds;
        if (used.Machine is { } machine)
        {
            cores["machine"] = machine / seconds;
            if (cpu.MeasuresRouter && cpu.MeasuresBackends)
                cores["other"] = Math.Max(0, machine - used.LoadGenerator - used.Router - used.Backends) / seconds;
        }
        summary["cores"] = cores;
        summary["router_cpu_seconds"] = used.Router;
        if (phases.FirstOrDefault(p => p.Phase.FirstError is not null).Phase?.FirstError is { } error)
            summary["first_error"] = error;
        return summary;
    }

    /// <summary>
    /// The added latency: each percentile through the router less the same percentile direct. (Requests are not paired,
    /// so this is the shift of the distribution, not the percentile of per-request differences.)
    /// </summary>
    private static void AddOverhead(JsonObject level, CpuAccounting cpu)
    {
        JsonNode direct = level["direct"]!, router = level["router"]!;
        foreach (var (name, field) in new[] { ("mean", "mean_latency_ms"), ("p50", "median_latency_ms"), ("p90", "p90_latency_ms"), ("p99", "p99_latency_ms") })
        {
            if ((double?)direct[field] is { } d && (double?)router[field] is { } r)
                level[$"added_latency_{name}_ms"] = r - d;
        }
        level["router_requests_per_second_vs_direct"] = (double)router["requests_per_second"]! / (double)direct["requests_per_second"]!;
        if (cpu.MeasuresRouter && (int)router["requests"]! > 0)
            level["router_cpu_us_per_request"] = (double)router["router_cpu_seconds"]! * 1e6 / (int)router["requests"]!;
    }

    private static readonly string[] PathNames = ["direct", "router"];
    private static readonly string[] CoreColumns = ["load_generator", "router", "backends", "machine"];

    private static string Cores(JsonNode cores) => string.Join(' ',
        CoreColumns.Select(name => (double?)cores[name] is { } v ? v.ToString("F2", CultureInfo.InvariantCulture) : "-"));
}
