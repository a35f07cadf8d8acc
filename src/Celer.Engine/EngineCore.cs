using Celer.Engine.Scheduling;

namespace Celer.Engine;

/// <summary>
/// The engine core (vLLM's <c>EngineCore</c>): requests, the scheduler and the model runner,
/// with no text and no callers. One <see cref="Step"/> = schedule → execute → update from output.
/// The core owns the executor and disposes it.
/// </summary>
public sealed class EngineCore(SchedulerConfig config, IModelExecutor executor) : IDisposable
{
    public Scheduler Scheduler { get; } = new(config);
    public IModelExecutor Executor { get; } = executor;
    public bool HasWork => Scheduler.HasWork;

    public void AddRequest(Request request) => Scheduler.AddRequest(request);

    public void AbortRequests(IEnumerable<string> requestIds) => Scheduler.FinishRequests(requestIds, RequestStatus.FinishedAborted);

    public (List<EngineCoreOutput> Outputs, SchedulerStats Stats) Step()
    {
        SchedulerOutput schedulerOutput = Scheduler.Schedule();
        // An empty schedule still goes to the runner when it carries finished ids to drop.
        ModelRunnerOutput runnerOutput = schedulerOutput.IsEmpty && schedulerOutput.FinishedRequestIds.Count == 0
            ? ModelRunnerOutput.Empty
            : Executor.Execute(schedulerOutput);
        List<EngineCoreOutput> outputs = Scheduler.UpdateFromOutput(schedulerOutput, runnerOutput);
        return (outputs, Scheduler.TakeStats(schedulerOutput.TotalNumScheduledTokens));
    }

    public void Dispose() => Executor.Dispose();
}
