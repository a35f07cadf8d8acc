using Celer.Server.Serving;

namespace Celer.Server.Hosting;

/// <summary>
/// Graceful shutdown (BAD_INPUT.md #25). The host runs every <see cref="IHostedLifecycleService.StoppingAsync"/>
/// before it stops any service, Kestrel included, so waiting here keeps the listener open while the
/// server drains: new requests get 503 with <c>Retry-After</c> (and <c>/health</c> 503, so a load
/// balancer moves on) while admitted ones finish. Requests still running near the end of the shutdown timeout
/// are aborted in the engine, so each response still ends properly (finish reason <c>abort</c>, then
/// <c>[DONE]</c> for a stream) in the grace period left before Kestrel closes the connections.
/// </summary>
internal sealed partial class RequestDrain(ServedModels models, ServerOptions options, ILogger<RequestDrain> logger) : IHostedLifecycleService
{
    public async Task StoppingAsync(CancellationToken cancellationToken)
    {
        models.BeginDraining();
        var inFlight = models.InFlight;
        if (inFlight > 0)
            LogWaiting(inFlight);
        // The last quarter of the timeout (at most 2 s) is kept to end what is still running.
        var grace = TimeSpan.FromTicks(Math.Min(TimeSpan.FromSeconds(2).Ticks, options.ShutdownTimeout.Ticks / 4));
        using var drainTime = new CancellationTokenSource(options.ShutdownTimeout - grace);
        using var drainOrStop = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, drainTime.Token);
        try
        {
            await models.WaitForDrainedAsync(drainOrStop.Token);
            return;
        }
        catch (OperationCanceledException) when (drainOrStop.IsCancellationRequested)
        {
        }

        LogTimedOut(models.InFlight);
        await Task.WhenAll(models.All.Select(m => m.Model.Engine.AbortAllAsync()));
        try
        {
            // Not the host's token: the grace period runs to its end, whatever the host does meanwhile.
            await models.WaitForDrainedAsync(CancellationToken.None).WaitAsync(grace, CancellationToken.None);
        }
        catch (TimeoutException)
        {
            LogCut(models.InFlight);
        }
    }

    [LoggerMessage(Level = LogLevel.Information, Message = "Shutting down: waiting for {InFlight} in-flight request(s) to finish")]
    private partial void LogWaiting(int inFlight);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Shutdown timeout reached with {InFlight} request(s) still running; they are aborted")]
    private partial void LogTimedOut(int inFlight);

    [LoggerMessage(Level = LogLevel.Warning, Message = "{InFlight} response(s) did not finish sending before the server stopped")]
    private partial void LogCut(int inFlight);

    public Task StartingAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    public Task StartAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    public Task StartedAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    public Task StopAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    public Task StoppedAsync(CancellationToken cancellationToken) => Task.CompletedTask;
}
