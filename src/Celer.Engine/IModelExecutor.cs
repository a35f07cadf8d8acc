using Celer.Models.Backend;
using Celer.Engine.Scheduling;

namespace Celer.Engine;

/// <summary>The model runner as the engine core sees it: one call per step.</summary>
public interface IModelExecutor : IDisposable
{
    /// <summary>How many KV blocks the backend allocated (block size from <see cref="EngineArgs"/>), the null block included.</summary>
    int NumKvBlocks { get; }

    ModelRunnerOutput Execute(SchedulerOutput schedulerOutput);

    /// <summary>The device's busy and idle time per step, where the backend measures it (CUDA); else null.</summary>
    StepTimeline? Timeline => null;
}
