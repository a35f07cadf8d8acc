using Celer.Server.Serving;

namespace Celer.Server.Hosting;

/// <summary>
/// Graceful shutdown (BAD_INPUT.md #25). The host runs every <see cref="IHostedLifecycleService.StoppingAsync"/>
/// before it stops any service, Kestrel included, so waiting here keeps the listener open while the
/// server drains: new requests get 503 with <c>Retry-After</c> (and <c>/health</c> 503, so a load
/// balancer moves on) while admitted ones finish. The host's shutdown timeout cancels the wait; Kestrel
/// then aborts whatever is left.
/// </summary>
internal sealed partial class RequestDrain(AdmissionControl admission, ILogger<RequestDrain> logger) : IHostedLifecycleService
{
    public async Task StoppingAsync(CancellationToken cancellationToken)
    {
        admission.BeginDraining();
        var inFlight = admission.InFlight;
        if (inFlight > 0)
            LogWaiting(inFlight);
        try
        {
            await admission.WaitForDrainedAsync(cancellationToken);
        }
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
        {
            LogTimedOut(admission.InFlight);
        }
    }

    [LoggerMessage(Level = LogLevel.Information, Message = "Shutting down: waiting for {InFlight} in-flight request(s) to finish")]
    private partial void LogWaiting(int inFlight);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Shutdown timeout reached with {InFlight} request(s) still running; they are aborted")]
    private partial void LogTimedOut(int inFlight);

    public Task StartingAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    public Task StartAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    public Task StartedAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    public Task StopAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    public Task StoppedAsync(CancellationToken cancellationToken) => Task.CompletedTask;
}
