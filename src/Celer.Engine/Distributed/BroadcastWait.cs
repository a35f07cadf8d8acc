using System.Diagnostics;

namespace Celer.Engine.Distributed;

/// <summary>
/// How a broadcast queue's writer or reader waits on a flag in shared memory: spin, then yield, then sleep, as vLLM's
/// <c>SpinTimer</c>, with a timeout and a cadence for checking that the other side is still alive.
/// </summary>
/// <remarks>
/// Spinning first because during decoding the next step's broadcast follows the last within microseconds and a futex
/// wake-up would cost more than the message. <see cref="SpinWait"/> spins briefly and then yields the core on its own,
/// which keeps a machine with fewer cores than waiters (CI) moving. After a second with nothing (an idle engine) the
/// wait sleeps a millisecond at a time, so idle workers give their cores back at the cost of at most a millisecond on
/// the first step after the pause (vLLM sleeps 100 ms after 10 s).
/// </remarks>
internal struct BroadcastWait
{
    private static readonly long YieldTicks = Stopwatch.Frequency; // 1 s

    // How often the caller looks at its peers (a liveness delegate such as Process.HasExited, the closed flag) and at the
    // clock: often enough that a dead process is noticed well within a step's time budget, rarely enough that the check
    // costs nothing next to the wait.
    private static readonly long CheckTicks = Stopwatch.Frequency / 100; // 10 ms

    private readonly long _start;
    private readonly long _deadline;
    private long _nextCheck;
    private SpinWait _spinner;

    /// <param name="timeout">How long this wait may last; <see cref="Timeout.InfiniteTimeSpan"/> for no limit.</param>
    public BroadcastWait(TimeSpan timeout)
    {
        _start = Stopwatch.GetTimestamp();
        double timeoutTicks = timeout.TotalSeconds * Stopwatch.Frequency;
        // Infinite, and timeouts too long to add to the clock without overflowing (TimeSpan.MaxValue), never end.
        _deadline = timeout == Timeout.InfiniteTimeSpan || timeoutTicks >= long.MaxValue - _start ? long.MaxValue : _start + (long)timeoutTicks;
        _nextCheck = Math.Min(_start + CheckTicks, _deadline);
    }

    public readonly TimeSpan Elapsed => Stopwatch.GetElapsedTime(_start);

    public readonly bool TimedOut => Stopwatch.GetTimestamp() >= _deadline;

    /// <summary>Rejects a negative timeout other than <see cref="Timeout.InfiniteTimeSpan"/>.</summary>
    public static void Validate(TimeSpan timeout)
    {
        if (timeout < TimeSpan.Zero && timeout != Timeout.InfiniteTimeSpan)
        {
            throw new ArgumentOutOfRangeException(nameof(timeout), timeout, "A shared-memory wait's timeout is non-negative or Timeout.InfiniteTimeSpan.");
        }
    }

    /// <summary>Waits a moment. Returns true when the caller should check on its peers and then on <see cref="TimedOut"/>:
    /// every 10 ms, and as soon as the timeout has passed.</summary>
    public bool Pause(CancellationToken cancellationToken)
    {
        cancellationToken.ThrowIfCancellationRequested();
        long now = Stopwatch.GetTimestamp();
        if (now - _start < YieldTicks)
        {
            _spinner.SpinOnce(sleep1Threshold: -1);
        }
        else
        {
            Thread.Sleep(1);
        }

        if (now < _nextCheck)
        {
            return false;
        }

        _nextCheck = Math.Min(now + CheckTicks, _deadline);
        return true;
    }
}
