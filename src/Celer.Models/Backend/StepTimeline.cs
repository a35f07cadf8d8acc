namespace Celer.Models.Backend;

/// <summary>
/// How the device spent the steps since the last <see cref="Reset"/>: busy from a step's first operation to its last
/// (what the host waits for), idle from one step's end to the next step's start, both measured on the device
/// (CUDA events). The idle share is the time the host kept the GPU waiting between steps: scheduling, metadata,
/// sampling bookkeeping, output processing.
/// </summary>
public sealed class StepTimeline
{
    public int Steps { get; private set; }

    public double BusyMilliseconds { get; private set; }

    public double IdleMilliseconds { get; private set; }

    /// <summary>Idle ÷ (busy + idle); 0 before two steps have run.</summary>
    public double IdleShare => BusyMilliseconds + IdleMilliseconds > 0 ? IdleMilliseconds / (BusyMilliseconds + IdleMilliseconds) : 0;

    public void Add(double busyMilliseconds, double idleMillisecondsBefore)
    {
        Steps++;
        BusyMilliseconds += busyMilliseconds;
        IdleMilliseconds += idleMillisecondsBefore;
    }

    public void Reset()
    {
        Steps = 0;
        BusyMilliseconds = 0;
        IdleMilliseconds = 0;
    }
}
