using Celer.Engine;
using Celer.Engine.Scheduling;

namespace Celer.Server.Tests.Support;

/// <summary>
/// The real CPU <see cref="IModelExecutor"/> with three handles a test needs to stage a failure or an
/// overload deterministically: a gate that holds the engine loop before a step (requests stay admitted
/// and unfinished), a pace that makes every step take at least a given time (a slow model, so a
/// disconnect lands long before the generation could end), and a switch that makes the next step
/// throw (the engine loop dies as it would on a device fault).
/// </summary>
internal sealed class InterceptingExecutor(IModelExecutor inner) : IModelExecutor
{
    private readonly ManualResetEventSlim _gate = new(initialState: true);
    private volatile bool _failNextStep;
    private int _stepsExecuted;

    public int NumKvBlocks => inner.NumKvBlocks;

    public int NumHostKvBlocks => inner.NumHostKvBlocks;

    public long HostKvBlockBytes => inner.HostKvBlockBytes;

    public bool SupportsSleep => inner.SupportsSleep;

    public void Sleep(int level) => inner.Sleep(level);

    public void WakeUp(bool weights, bool kvCache) => inner.WakeUp(weights, kvCache);

    public long BytesToWake => inner.BytesToWake;

    public long? DeviceFreeBytes => inner.DeviceFreeBytes;

    public void WatchFailures(Action<Exception> onFailure) => inner.WatchFailures(onFailure);

    /// <summary>Least wall time of one step.</summary>
    public TimeSpan StepPace { get; set; } = TimeSpan.Zero;

    public int StepsExecuted => Volatile.Read(ref _stepsExecuted);

    /// <summary>Holds the engine loop before its next step until <see cref="Open"/>.</summary>
    public void Close() => _gate.Reset();

    public void Open() => _gate.Set();

    /// <summary>The next step throws instead of running the model.</summary>
    public void FailNextStep() => _failNextStep = true;

    public ModelRunnerOutput Execute(SchedulerOutput schedulerOutput)
    {
        // Bounded: a test that forgets to open the gate fails on its own timeouts instead of hanging the run.
        if (!_gate.Wait(TimeSpan.FromSeconds(30)))
            throw new TimeoutException("The test never opened the executor's gate.");
        if (_failNextStep)
            throw new InvalidOperationException("Injected device fault at /opt/secret/kernel.cu:42 (0xdeadbeef)");
        var started = System.Diagnostics.Stopwatch.StartNew();
        var output = inner.Execute(schedulerOutput);
        var rest = StepPace - started.Elapsed;
        if (rest > TimeSpan.Zero)
            Thread.Sleep(rest);
        Interlocked.Increment(ref _stepsExecuted);
        return output;
    }

    public void Dispose()
    {
        inner.Dispose();
        _gate.Dispose();
    }
}
