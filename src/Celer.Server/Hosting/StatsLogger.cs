using Celer.Engine;

namespace Celer.Server.Hosting;

/// <summary>
/// vLLM's periodic stats line (its <c>LoggingStatLogger</c>): every interval while the engine has had work, the
/// prompt and generation throughput since the last line, running and waiting requests, KV-cache usage and the
/// prefix-cache hit rate. Silent while idle; <c>--disable-log-stats</c> turns it off.
/// </summary>
/// <param name="modelName">Starts the line when the server has several models, one logger each; null keeps vLLM's line as is.</param>
internal sealed partial class StatsLogger(AsyncLlmEngine engine, TimeSpan interval, ILogger<StatsLogger> logger, string? modelName = null) : BackgroundService
{
    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        using var timer = new PeriodicTimer(interval);
        EngineStats last = engine.Stats;
        long lastTicks = TimeProvider.System.GetTimestamp();
        try
        {
            while (await timer.WaitForNextTickAsync(stoppingToken))
            {
                EngineStats now = engine.Stats;
                long ticks = TimeProvider.System.GetTimestamp();
                if (logger.IsEnabled(LogLevel.Information) && Describe(last, now, TimeProvider.System.GetElapsedTime(lastTicks, ticks)) is { } line)
                {
                    LogStats(modelName is null ? line : $"{modelName}: {line}");
                }

                (last, lastTicks) = (now, ticks);
            }
        }
        catch (OperationCanceledException)
        {
        }
    }

    [LoggerMessage(Level = LogLevel.Information, Message = "{Stats}")]
    private partial void LogStats(string stats);

    /// <summary>The line for the interval from <paramref name="before"/> to <paramref name="after"/>; null when nothing happened.</summary>
    internal static string? Describe(EngineStats before, EngineStats after, TimeSpan elapsed)
    {
        long prompt = after.PromptTokens - before.PromptTokens, generated = after.GenerationTokens - before.GenerationTokens;
        if (prompt == 0 && generated == 0 && after.NumRunning == 0 && after.NumWaiting == 0)
        {
            return null;
        }

        double seconds = Math.Max(elapsed.TotalSeconds, 1e-9);
        long queries = after.PrefixCacheQueries - before.PrefixCacheQueries, hits = after.PrefixCacheHits - before.PrefixCacheHits;
        string line = FormattableString.Invariant(
            $"Avg prompt throughput: {prompt / seconds:F1} tokens/s, Avg generation throughput: {generated / seconds:F1} tokens/s, Running: {after.NumRunning} reqs, Waiting: {after.NumWaiting} reqs, KV cache usage: {after.KvCacheUsage * 100:F1}%, Prefix cache hit rate: {(queries > 0 ? 100.0 * hits / queries : 0):F1}%");
        if (after.KvOffload is not { } offload)
        {
            return line;
        }

        // vLLM's line names the KV connector's share of prefix hits "external"; the host tier's usage follows it.
        long hostQueries = offload.Counters.Queries - (before.KvOffload?.Counters.Queries ?? 0), hostHits = offload.Counters.Hits - (before.KvOffload?.Counters.Hits ?? 0);
        return line + FormattableString.Invariant(
            $", External prefix cache hit rate: {(hostQueries > 0 ? 100.0 * hostHits / hostQueries : 0):F1}%, KV host tier usage: {offload.Usage * 100:F1}%");
    }
}
