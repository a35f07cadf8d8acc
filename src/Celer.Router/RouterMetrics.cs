using System.Globalization;
using System.Text;
using Prometheus;

namespace Celer.Router;

/// <summary>
/// The router's own <c>GET /metrics</c>, in Prometheus text format: Celer's series, named <see cref="Prefix"/>…, and
/// beside them those of vLLM production-stack's router whose names no vLLM engine uses (<see cref="ProductionStackPrefix"/>…,
/// computed as production-stack computes them), so its dashboards read a Celer router too. Its series named like an
/// engine's (<c>vllm:num_requests_running{server}</c>) are left out: one Prometheus scrapes both the router and its
/// backends, and every dashboard query would sum the router's series with the backends'.
/// Each backend is the label <c>backend</c> (production-stack's <c>server</c>), its URL. Counters and histograms are kept
/// per request; the gauges are read from the backends when scraped.
/// </summary>
public sealed class RouterMetrics
{
    public const string Prefix = "celer_router_";

    /// <summary>production-stack's router's prefix, vLLM's.</summary>
    public const string ProductionStackPrefix = "vllm:";

    /// <summary>
    /// prometheus-net accepts no ':' in a name, so production-stack's series are registered under this prefix in a registry
    /// of their own and renamed on the way out (as Celer's server does for its <c>vllm:</c> series).
    /// </summary>
    private const string RegisteredProductionStackPrefix = "vllm_";

    /// <summary>
    /// vLLM's <c>time_to_first_token_seconds</c> buckets, so the router's time to first byte and the backends' time to
    /// first token can be compared bucket for bucket.
    /// </summary>
    private static readonly double[] TimeToFirstByteBuckets =
        [0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0, 40.0, 80.0, 160.0, 640.0, 2560.0];

    /// <summary>production-stack's <c>vllm:request_latency_seconds</c> buckets.</summary>
    private static readonly double[] RequestLatencyBuckets = [0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0];

    private readonly CollectorRegistry _registry = Metrics.NewCustomRegistry();
    private readonly CollectorRegistry _productionStack = Metrics.NewCustomRegistry();
    private readonly Counter _requests;
    private readonly Counter _retries;
    private readonly Histogram _timeToFirstByte;
    private readonly Counter _circuitOpens;
    private readonly Counter _rejected;
    private readonly Counter _incoming;
    private readonly Counter _errors;
    private readonly Histogram _requestLatency;

    public RouterMetrics(BackendPool pool, PendingRequestLimit limit)
    {
        var factory = Metrics.WithCustomRegistry(_registry);
        _requests = factory.CreateCounter(Prefix + "requests_total",
            "Requests sent to a backend, by the status it answered (\"unreachable\": no connection). A retried request counts once per backend tried.",
            ["backend", "model", "status"]);
        _retries = factory.CreateCounter(Prefix + "retries_total",
            "Requests sent again to another backend because this one could not be reached.", ["backend", "model"]);
        _timeToFirstByte = factory.CreateHistogram(Prefix + "time_to_first_byte_seconds",
            "From sending a request to a backend to the first byte of its answer's body (the first token of a stream).",
            new HistogramConfiguration { LabelNames = ["backend", "model"], Buckets = TimeToFirstByteBuckets });
        _circuitOpens = factory.CreateCounter(Prefix + "circuit_breaker_opens_total",
            "Times the backend's circuit breaker opened (consecutive failures, or a failed half-open trial).", ["backend"]);

        // No model label: a refused request's body is never read, so its model is not known.
        _rejected = factory.CreateCounter(Prefix + "rejected_requests_total",
            "Client requests refused with 503 at once because all --max-pending-requests slots were taken.");
        var pending = factory.CreateGauge(Prefix + "pending_requests",
            "Client requests holding a --max-pending-requests slot now (being read, forwarded, or their answer copied back).");
        var maxPending = factory.CreateGauge(Prefix + "max_pending_requests", "The --max-pending-requests bound.");
        maxPending.Set(limit.MaxPendingRequests);

        var inFlight = factory.CreateGauge(Prefix + "requests_in_flight", "Requests being forwarded to the backend now.", ["backend"]);
        var healthy = factory.CreateGauge(Prefix + "backend_healthy", "1 while the backend passes its health checks, else 0 (its circuit breaker is celer_router_circuit_breaker_state).", ["backend"]);
        var circuit = factory.CreateGauge(Prefix + "circuit_breaker_state", "The backend's circuit: 0 closed, 1 open, 2 half-open.", ["backend"]);
        _registry.AddBeforeCollectCallback(() =>
        {
            pending.Set(limit.InFlight);
            foreach (var backend in pool.Backends)
            {
                var label = Label(backend);
                inFlight.WithLabels(label).Set(backend.Load.InFlight);
                healthy.WithLabels(label).Set(backend.IsHealthy ? 1 : 0);
                circuit.WithLabels(label).Set((int)backend.Breaker.State);
            }
        });
        // A removed backend (a pod that went) would otherwise keep its last gauge values for good; its counters stay, as
        // a counter's history should.
        pool.BackendRemoved += backend =>
        {
            var label = Label(backend);
            inFlight.RemoveLabelled(label);
            healthy.RemoveLabelled(label);
            circuit.RemoveLabelled(label);
        };

        // production-stack's series: its names (less the prefix), help texts, labels and types.
        var ps = Metrics.WithCustomRegistry(_productionStack);
        var p = RegisteredProductionStackPrefix;
        // Python's prometheus_client adds "_total" to a counter's name on the wire; prometheus-net writes names as given.
        _incoming = ps.CreateCounter(p + "num_incoming_requests_total",
            "Total valid incoming requests to router (including when no backends available).", ["model"]);
        _errors = ps.CreateCounter(p + "request_errors_total", "Total request errors", ["server", "model", "error_type"]);
        _requestLatency = ps.CreateHistogram(p + "request_latency_seconds", "End-to-end request latency observed at the router",
            new HistogramConfiguration { LabelNames = ["server", "model", "status"], Buckets = RequestLatencyBuckets });
        var qps = ps.CreateGauge(p + "current_qps", "Current Queries Per Second", ["server"]);
        var avgLatency = ps.CreateGauge(p + "avg_latency", "Average end-to-end request latency", ["server"]);
        var prefill = ps.CreateGauge(p + "num_prefill_requests", "Number of Prefill Requests", ["server"]);
        var decoding = ps.CreateGauge(p + "num_decoding_requests", "Number of Decoding Requests", ["server"]);
        var healthyPods = ps.CreateGauge(p + "healthy_pods_total", "Number of healthy vLLM pods", ["server"]);
        _productionStack.AddBeforeCollectCallback(() =>
        {
            foreach (var backend in pool.Backends)
            {
                var label = Label(backend);
                var stats = backend.Stats.Read();
                qps.WithLabels(label).Set(stats.RequestsPerSecond);
                avgLatency.WithLabels(label).Set(stats.AverageLatencySeconds);
                prefill.WithLabels(label).Set(stats.Prefill);
                decoding.WithLabels(label).Set(stats.Decoding);
                healthyPods.WithLabels(label).Set(backend.IsHealthy ? 1 : 0);
            }
        });
        pool.BackendRemoved += backend =>
        {
            foreach (var gauge in new[] { qps, avgLatency, prefill, decoding, healthyPods })
                gauge.RemoveLabelled(Label(backend));
        };
    }

    /// <summary>A backend answered with <paramref name="status"/>.</summary>
    public void CountRequest(Backend backend, string model, int status) =>
        _requests.WithLabels(Label(backend), model, status.ToString(CultureInfo.InvariantCulture)).Inc();

    /// <summary>A backend could not be reached.</summary>
    public void CountUnreachable(Backend backend, string model) => _requests.WithLabels(Label(backend), model, "unreachable").Inc();

    public void CountRetry(Backend failed, string model) => _retries.WithLabels(Label(failed), model).Inc();

    public void ObserveTimeToFirstByte(Backend backend, string model, TimeSpan elapsed) =>
        _timeToFirstByte.WithLabels(Label(backend), model).Observe(elapsed.TotalSeconds);

    /// <summary>A client request was refused because every slot of the router-wide bound was taken.</summary>
    public void CountRejected() => _rejected.Inc();

    public void CountCircuitOpened(Backend backend) => _circuitOpens.WithLabels(Label(backend)).Inc();

    /// <summary>A client's request named a model some backend serves (production-stack counts it before routing, so also when none is available).</summary>
    public void CountIncoming(string model) => _incoming.WithLabels(model).Inc();

    /// <summary>Sending to a backend or reading its answer failed; the error type is the exception's, as production-stack's is its Python exception's.</summary>
    public void CountError(Backend backend, string model, Exception error) => _errors.WithLabels(Label(backend), model, error.GetType().Name).Inc();

    /// <summary>A request to a backend ended: its answer copied to its end (success below status 400), or no answer (error).</summary>
    public void ObserveLatency(Backend backend, string model, bool success, TimeSpan elapsed) =>
        _requestLatency.WithLabels(Label(backend), model, success ? "success" : "error").Observe(elapsed.TotalSeconds);

    public async Task<string> ExportAsync(CancellationToken cancellationToken)
    {
        using var buffer = new MemoryStream();
        await _registry.CollectAndExportAsTextAsync(buffer, cancellationToken);
        var text = new StringBuilder(Encoding.UTF8.GetString(buffer.GetBuffer(), 0, (int)buffer.Length));
        buffer.SetLength(0);
        await _productionStack.CollectAndExportAsTextAsync(buffer, cancellationToken);
        foreach (var line in Encoding.UTF8.GetString(buffer.GetBuffer(), 0, (int)buffer.Length).Split('\n'))
        {
            if (line.Length > 0)
                text.Append(WithProductionStackPrefix(line)).Append('\n');
        }
        return text.ToString();
    }

    /// <summary>The line with its metric name's registered prefix put back to <c>vllm:</c>: every name in that registry has it.</summary>
    private static string WithProductionStackPrefix(string line)
    {
        var nameStart = line.StartsWith("# HELP ", StringComparison.Ordinal) || line.StartsWith("# TYPE ", StringComparison.Ordinal) ? 7 : 0;
        return string.CompareOrdinal(line, nameStart, RegisteredProductionStackPrefix, 0, RegisteredProductionStackPrefix.Length) == 0
            ? string.Concat(line.AsSpan(0, nameStart), ProductionStackPrefix, line.AsSpan(nameStart + RegisteredProductionStackPrefix.Length))
            : line;
    }

    private static string Label(Backend backend) => backend.Url.AbsoluteUri;
}
