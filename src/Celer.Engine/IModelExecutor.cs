using Celer.Models.Backend;
using Celer.Engine.Scheduling;

namespace Celer.Engine;

/// <summary>A step the executor finished: what the scheduler asked for and what the runner produced.</summary>
public readonly record struct CompletedStep(SchedulerOutput SchedulerOutput, ModelRunnerOutput RunnerOutput);

/// <summary>The model runner as the engine core sees it: one call per step.</summary>
public interface IModelExecutor : IDisposable
{
    /// <summary>How many KV blocks the backend allocated (block size from <see cref="EngineArgs"/>), the null block included.</summary>
    int NumKvBlocks { get; }

    /// <summary>
    /// Blocks of the host KV tier the backend allocated (<c>--kv-offload-size</c>); 0 without one. No default: a wrapper
    /// that did not pass it on would hide the tier from the scheduler.
    /// </summary>
    int NumHostKvBlocks { get; }

    /// <summary>Bytes one block takes in the host tier (every layer's keys and values), for the transfer metrics.</summary>
    long HostKvBlockBytes { get; }

    /// <summary>Whether <see cref="Submit"/> can leave a step running while the engine schedules the next one.</summary>
    bool SupportsAsyncScheduling => false;

    /// <summary>
    /// Whether a step left running really runs while the host works (a device computes and samples it), which makes
    /// async scheduling the default; on a backend that computes on the calling thread it only delays each output.
    /// </summary>
    bool OverlapsSteps => false;

    /// <summary>
    /// Runs a step. Its <see cref="SchedulerOutput.KvTransfers"/> are queued first (a store reads its block before this step
    /// writes it); each output reports the loads found finished since the last (<see cref="ModelRunnerOutput.FinishedKvLoads"/>),
    /// and a step with no tokens waits until at least one load in flight has finished, so the engine never spins on them.
    /// </summary>
    ModelRunnerOutput Execute(SchedulerOutput schedulerOutput);

    /// <summary>
    /// Async scheduling: starts the step and may leave it running, so that the host prepares the next step while the
    /// device computes this one. Adds to <paramref name="completed"/>, oldest first, every step this call finished:
    /// the step still running from the previous call, and this one unless it is left running. A step may feed the
    /// tokens sampled by the step still running (the scheduler's placeholders). Every step submitted is completed
    /// exactly once, at the latest by the next call. By default a step runs to its end at once.
    /// </summary>
    void Submit(SchedulerOutput schedulerOutput, List<CompletedStep> completed) => completed.Add(new CompletedStep(schedulerOutput, Execute(schedulerOutput)));

    /// <summary>The device's busy and idle time per step, where the backend measures it (CUDA); else null.</summary>
    StepTimeline? Timeline => null;

    /// <summary>Sleep mode (<c>--enable-sleep-mode</c>): whether <see cref="Sleep"/> and <see cref="WakeUp"/> work.</summary>
    bool SupportsSleep => false;

    /// <summary>
    /// Gives the KV cache's memory back (its contents are lost) and the weights': level 1 keeps a copy in host memory, level 2
    /// discards them, to be loaded from the checkpoint again on waking. Only between steps, while no request holds a KV block.
    /// </summary>
    void Sleep(int level) => throw new NotSupportedException("This executor has no sleep mode.");

    /// <summary>Takes the weights' memory again (restoring or reloading them) and, when <paramref name="kvCache"/>, the KV cache's.</summary>
    void WakeUp(bool weights, bool kvCache) => throw new NotSupportedException("This executor has no sleep mode.");

    /// <summary>Device bytes a full wake-up takes back (0 while awake, or where memory is the host's).</summary>
    long BytesToWake => 0;

    /// <summary>Free device memory now; null where there is no device memory to share (the CPU).</summary>
    long? DeviceFreeBytes => null;

    /// <summary>
    /// Has <paramref name="onFailure"/> called, once and from another thread, when the executor fails between steps (a
    /// tensor-parallel worker process exited), so an idle engine turns dead at once rather than at its next request.
    /// </summary>
    void WatchFailures(Action<Exception> onFailure)
    {
    }
}
