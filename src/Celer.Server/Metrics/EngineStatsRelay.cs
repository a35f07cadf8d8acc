using Celer.Engine;

namespace Celer.Server.Metrics;

/// <summary>
/// The engine takes its <see cref="IEngineStatsListener"/> when it is constructed, before the server
/// (and its Prometheus metrics) exists. The loader is handed this relay; <see cref="CelerServer.Build"/>
/// attaches the metrics to it. Until then, callbacks are dropped.
/// </summary>
public sealed class EngineStatsRelay : IEngineStatsListener
{
    private volatile IEngineStatsListener? _target;

    internal void Attach(IEngineStatsListener target) => _target = target;

    public void OnIteration(IterationStats stats) => _target?.OnIteration(stats);

    public void OnRequestFinished(string requestId, RequestMetrics metrics) => _target?.OnRequestFinished(requestId, metrics);
}
