using System.Globalization;
using System.Text;
using Prometheus;

namespace Celer.Router;

/// <summary>
/// The router's own <c>GET /metrics</c>, in Prometheus text format. Every name starts with <see cref="Prefix"/>, not
/// vLLM's <c>vllm:</c>: one Prometheus scrapes both the router and its backends, and a router series named like a
/// backend's (production-stack's <c>vllm:num_requests_running</c>) would be summed with it by every dashboard query.
/// Each backend is the label <c>backend</c>, its URL. Counters and the histogram are kept per request; the gauges are
/// read from the backends when scraped.
/// </summary>
public sealed class RouterMetrics
{
    public const string Prefix = "celer_router_";

    /// <summary>
    /// vLLM's <c>time_to_first_token_seconds</c> buckets, so the router's time to first byte and the backends' time to
    /// first token can be compared bucket for bucket.
    /// </summary>
    private static readonly double[] TimeToFirstByteBuckets =
        [0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0, 40.0, 80.0, 160.0, 640.0, 2560.0];

    private readonly CollectorRegistry _registry = Metrics.NewCustomRegistry();
    private readonly Counter _requests;
    private readonly Counter _retries;
    private readonly Histogram _timeToFirstByte;
    private readonly Counter _circuitOpens;

    public RouterMetrics(BackendPool pool)
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

        var inFlight = factory.CreateGauge(Prefix + "requests_in_flight", "Requests being forwarded to the backend now.", ["backend"]);
        var healthy = factory.CreateGauge(Prefix + "backend_healthy", "1 while the backend passes its health checks, else 0 (its circuit breaker is celer_router_circuit_breaker_state).", ["backend"]);
        var circuit = factory.CreateGauge(Prefix + "circuit_breaker_state", "The backend's circuit: 0 closed, 1 open, 2 half-open.", ["backend"]);
        _registry.AddBeforeCollectCallback(() =>
        {
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
    }

    /// <summary>A backend answered with <paramref name="status"/>.</summary>
    public void CountRequest(Backend backend, string model, int status) =>
        _requests.WithLabels(Label(backend), model, status.ToString(CultureInfo.InvariantCulture)).Inc();

    /// <summary>A backend could not be reached.</summary>
    public void CountUnreachable(Backend backend, string model) => _requests.WithLabels(Label(backend), model, "unreachable").Inc();

    public void CountRetry(Backend failed, string model) => _retries.WithLabels(Label(failed), model).Inc();

    public void ObserveTimeToFirstByte(Backend backend, string model, TimeSpan elapsed) =>
        _timeToFirstByte.WithLabels(Label(backend), model).Observe(elapsed.TotalSeconds);

    public void CountCircuitOpened(Backend backend) => _circuitOpens.WithLabels(Label(backend)).Inc();

    public async Task<string> ExportAsync(CancellationToken cancellationToken)
    {
        using var buffer = new MemoryStream();
        await _registry.CollectAndExportAsTextAsync(buffer, cancellationToken);
        return Encoding.UTF8.GetString(buffer.GetBuffer(), 0, (int)buffer.Length);
    }

    private static string Label(Backend backend) => backend.Url.AbsoluteUri;
}
