using System.CommandLine;
using System.Globalization;
using Celer.Router;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

namespace Celer.Cli;

/// <summary>
/// <c>celer router --backend URL[,model] ...</c> (or <c>--service-discovery k8s --k8s-label-selector ...</c>): an
/// OpenAI-compatible front over several servers (vLLM production-stack's router).
/// </summary>
internal static class RouterCommand
{
    private static readonly Dictionary<string, RoutingLogic> RoutingLogics = new(StringComparer.Ordinal)
    {
        ["roundrobin"] = RoutingLogic.RoundRobin,
        ["session"] = RoutingLogic.Session,
        ["prefix-aware"] = RoutingLogic.PrefixAware,
        ["least-loaded"] = RoutingLogic.LeastLoaded,
    };

    public static Command Create()
    {
        var defaults = new RouterOptions { Backends = [] };
        var backends = new Option<string[]>("--backend")
        {
            Description = "A backend server: URL, or URL,model when its model name should not be read from its /v1/models. Repeat for each (--service-discovery static).",
            AllowMultipleArgumentsPerToken = false,
        };
        var serviceDiscovery = new Option<string>("--service-discovery")
        {
            Description = "static: the --backend list; k8s: the ready pods matching --k8s-label-selector, watched through the Kubernetes API (in-cluster config).",
            DefaultValueFactory = _ => "static",
        }.AcceptOnlyFromAmong("static", "k8s");
        var k8sNamespace = new Option<string>("--k8s-namespace") { Description = "Namespace of the backend pods (k8s discovery). Default: the router's own pod's." };
        var k8sLabelSelector = new Option<string>("--k8s-label-selector") { Description = "Label selector of the backend pods, e.g. app=celer (k8s discovery; required)." };
        var k8sPort = new Option<int?>("--k8s-port") { Description = "Port the backend pods serve on (k8s discovery). Default: 8000." };
        var routingLogic = new Option<string>("--routing-logic")
        {
            Description = "roundrobin: each model's backends in turn; session: consistent hashing on --session-key; "
                + "prefix-aware: the backend sent the longest prefix of the prompt, else the least loaded; "
                + "least-loaded: the lowest load read from the backends' /metrics plus the requests sent since.",
            DefaultValueFactory = _ => "roundrobin",
        }.AcceptOnlyFromAmong([.. RoutingLogics.Keys]);
        var sessionKey = new Option<string>("--session-key") { Description = "Header whose value keeps a session on one backend (session routing).", DefaultValueFactory = _ => defaults.SessionKey };
        var host = new Option<string>("--host") { Description = "Interface to bind.", DefaultValueFactory = _ => defaults.Host };
        var port = new Option<int>("--port") { Description = "Port to listen on.", DefaultValueFactory = _ => defaults.Port };
        var healthCheckInterval = new Option<double>("--health-check-interval") { Description = "Seconds between health checks of each backend.", DefaultValueFactory = _ => defaults.HealthCheckInterval.TotalSeconds };
        var requestStatsWindow = new Option<double>("--request-stats-window") { Description = "Seconds of the sliding window of the router's vllm:current_qps and vllm:avg_latency (production-stack's flag).", DefaultValueFactory = _ => defaults.RequestStatsWindow.TotalSeconds };
        var metricsScrapeInterval = new Option<double?>("--metrics-scrape-interval")
        {
            Description = "Seconds between scrapes of each backend's /metrics for its load (prefix-aware and least-loaded routing). Default: --health-check-interval.",
        };
        var prefixChunkSize = new Option<int>("--prefix-chunk-size") { Description = "Characters per chunk of the prefix-aware router's trie: prompts match in whole chunks.", DefaultValueFactory = _ => defaults.PrefixChunkSize };
        var prefixMaxChunks = new Option<int>("--prefix-max-chunks") { Description = "Chunks the prefix-aware router remembers over all backends; the least recently used are evicted.", DefaultValueFactory = _ => defaults.PrefixMaxChunks };
        var breakerThreshold = new Option<int>("--circuit-breaker-threshold") { Description = "Consecutive failures (no connection, or a 5xx answer) that open a backend's circuit breaker; 0 turns it off.", DefaultValueFactory = _ => defaults.CircuitBreakerThreshold };
        var breakerCooldown = new Option<double>("--circuit-breaker-cooldown") { Description = "Seconds an open circuit keeps its backend out before one trial request.", DefaultValueFactory = _ => defaults.CircuitBreakerCooldown.TotalSeconds };
        // Read as text so that a value that is not an integer gets the same one line as one out of range, not the parser's
        // error followed by the whole help.
        var maxPendingRequests = new Option<string>("--max-pending-requests")
        {
            Description = "Requests in flight through the router (streams until their end) beyond which new ones get 503 with Retry-After at once.",
            DefaultValueFactory = _ => defaults.MaxPendingRequests.ToString(CultureInfo.InvariantCulture),
        };
        var logLevel = new Option<LogLevel>("--log-level") { Description = "Least severe log level written.", DefaultValueFactory = _ => defaults.LogLevel };

        var command = new Command("router", "Route OpenAI API requests over several Celer or vLLM servers.");
        foreach (var option in new Option[] { backends, serviceDiscovery, k8sNamespace, k8sLabelSelector, k8sPort, routingLogic, sessionKey, host, port, healthCheckInterval, requestStatsWindow, metricsScrapeInterval, prefixChunkSize, prefixMaxChunks, breakerThreshold, breakerCooldown, maxPendingRequests, logLevel })
            command.Options.Add(option);

        command.SetAction(async (result, cancellationToken) => await CliRunner.RunAsync(result, async () =>
        {
            var kubernetes = result.GetValue(serviceDiscovery) == "k8s"
                ? new KubernetesDiscovery(result.GetValue(k8sNamespace), result.GetValue(k8sLabelSelector) ?? "", result.GetValue(k8sPort) ?? DefaultK8sPort)
                : null;
            // The k8s flags mean nothing to a static list: refused rather than silently ignored.
            if (kubernetes is null && new Option[] { k8sNamespace, k8sLabelSelector, k8sPort }.FirstOrDefault(o => result.GetResult(o) is not null) is { } stray)
                throw new CliException($"{stray.Name}: only taken with --service-discovery k8s.");
            var options = new RouterOptions
            {
                Backends = [.. (result.GetValue(backends) ?? []).Select(BackendSpec.Parse)],
                Kubernetes = kubernetes,
                RoutingLogic = RoutingLogics[result.GetValue(routingLogic)!],
                SessionKey = result.GetValue(sessionKey)!,
                Host = result.GetValue(host)!,
                Port = result.GetValue(port),
                HealthCheckInterval = Seconds("--health-check-interval", result.GetValue(healthCheckInterval)),
                RequestStatsWindow = Seconds("--request-stats-window", result.GetValue(requestStatsWindow)),
                MetricsScrapeInterval = result.GetValue(metricsScrapeInterval) is { } scrape ? Seconds("--metrics-scrape-interval", scrape) : null,
                PrefixChunkSize = result.GetValue(prefixChunkSize),
                PrefixMaxChunks = result.GetValue(prefixMaxChunks),
                CircuitBreakerThreshold = result.GetValue(breakerThreshold),
                CircuitBreakerCooldown = Seconds("--circuit-breaker-cooldown", result.GetValue(breakerCooldown)),
                MaxPendingRequests = Integer("--max-pending-requests", result.GetValue(maxPendingRequests)!),
                LogLevel = result.GetValue(logLevel),
            };
            // Bad values are refused by RouterOptions.Validate (an ArgumentException naming the flag) before anything starts.
            var app = CelerRouter.Build(options);
            await app.StartAsync(cancellationToken);
            var over = kubernetes is null ? $"{options.Backends.Count} backends" : $"the ready pods matching {kubernetes.LabelSelector}";
            Console.WriteLine($"Routing ({result.GetValue(routingLogic)}) over {over} at {CelerRouter.GetBoundAddress(app)}");
            await app.WaitForShutdownAsync(CancellationToken.None);
            return 0;
        }));
        return command;
    }

    /// <summary>vLLM's (and production-stack's) serving port.</summary>
    private const int DefaultK8sPort = 8000;

    /// <summary>A flag's whole number; what is not one (1.5, abc, past Int32) is refused here, the range by RouterOptions.Validate.</summary>
    private static int Integer(string flag, string text) =>
        int.TryParse(text, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out var value)
            ? value
            : throw new CliException($"{flag} {text}: must be a whole number.");

    /// <summary>A flag's seconds as a time span. NaN, infinities and more than ten years (past any use, and near TimeSpan's
    /// limit, which would throw) are refused here; the range each flag allows is RouterOptions.Validate's to check.</summary>
    private static TimeSpan Seconds(string flag, double seconds) =>
        double.IsFinite(seconds) && Math.Abs(seconds) <= TimeSpan.FromDays(3650).TotalSeconds
            ? TimeSpan.FromSeconds(seconds)
            : throw new CliException($"{flag} {seconds}: must be a positive number of seconds.");
}
