using System.Diagnostics;

namespace Celer.Server.Tests.Support;

/// <summary>Bounded waits for a condition another thread makes true (the engine loop, the host).</summary>
internal static class Poll
{
    public static async Task UntilAsync(Func<bool> condition, TimeSpan timeout, string what)
    {
        var clock = Stopwatch.StartNew();
        while (!condition())
        {
            Assert.True(clock.Elapsed < timeout, $"timed out after {timeout.TotalSeconds} s waiting until {what}");
            await Task.Delay(5);
        }
    }
}
