using System.Diagnostics;

namespace Celer.Engine;

/// <summary>The engine's monotonic clock in seconds: every timing (arrival, queued, first token, …)
/// is read from it so intervals never go negative when the wall clock is adjusted.</summary>
public static class EngineClock
{
    public static double Now => Stopwatch.GetTimestamp() / (double)Stopwatch.Frequency;
}
