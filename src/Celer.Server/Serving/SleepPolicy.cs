using Celer.Engine;

namespace Celer.Server.Serving;

/// <summary>
/// Models served with sleep mode share the device by taking turns: before a sleeping model wakes, the least recently used
/// idle models that are awake are put to sleep (level 1, so they wake fast) until the device has the memory the waking one
/// takes back. A model still serving requests is never put to sleep for another: the waking one waits until one is idle.
/// Decisions are made one at a time, so two models waking at once cannot both count on the same free memory.
/// </summary>
internal sealed class SleepPolicy(IReadOnlyList<AsyncLlmEngine> engines)
{
    private readonly Lock _gate = new();

    /// <summary>Whether <paramref name="waking"/> fits on the device now, after putting others to sleep if needed.</summary>
    public bool MakeRoom(AsyncLlmEngine waking)
    {
        lock (_gate)
        {
            if (waking.DeviceFreeBytes is not { } free)
            {
                return true;   // the host's memory: nothing to share out
            }

            long needed = waking.BytesToWake;
            foreach (AsyncLlmEngine other in engines.Where(e => e != waking && !e.IsDead && !e.IsSleeping && e.IsIdle).OrderBy(e => e.LastRequestTime))
            {
                if (free >= needed)
                {
                    break;
                }

                // The other model's loop does it; it finishes at once, since that model runs nothing. One that failed,
                // stopped, or was woken before it fell asleep frees nothing, and must not fail the model asking.
                try
                {
                    other.SleepAsync(1).GetAwaiter().GetResult();
                }
                catch (Exception e) when (e is OperationCanceledException or ObjectDisposedException or EngineDeadException || other.IsDead)
                {
                    continue;
                }

                free = waking.DeviceFreeBytes ?? free;
            }

            return free >= needed;
        }
    }

    /// <summary>The policy of the sleep-mode engines among <paramref name="engines"/>, set as each one's <see cref="AsyncLlmEngine.MakeRoomToWake"/>.</summary>
    public static SleepPolicy Attach(IEnumerable<AsyncLlmEngine> engines)
    {
        List<AsyncLlmEngine> sleepers = [.. engines.Where(e => e.SupportsSleep)];
        var policy = new SleepPolicy(sleepers);
        foreach (AsyncLlmEngine engine in sleepers)
        {
            engine.MakeRoomToWake = policy.MakeRoom;
        }

        return policy;
    }
}
