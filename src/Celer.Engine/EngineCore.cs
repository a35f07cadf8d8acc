using Celer.Engine.Scheduling;

namespace Celer.Engine;

/// <summary>
/// The engine core (vLLM's <c>EngineCore</c>): requests, the scheduler and the model runner,
/// with no text and no callers. One <see cref="Step"/> = schedule → execute → update from output.
/// With async scheduling (<see cref="SchedulerConfig.AsyncScheduling"/>) a step's output arrives one call later:
/// the step is left running on the device while the next call schedules and launches the one after it, and the
/// outputs of the step that finished meanwhile are applied then (vLLM's async scheduling). The core owns the
/// executor and disposes it.
/// </summary>
public sealed class EngineCore : IDisposable
{
    private readonly List<CompletedStep> _completed = [];
    private int _stepsInFlight;

    public EngineCore(SchedulerConfig config, IModelExecutor executor)
    {
        if (config.AsyncScheduling && !executor.SupportsAsyncScheduling)
        {
            throw new ArgumentException("Async scheduling needs an executor that can leave a step running.", nameof(config));
        }

        Scheduler = new Scheduler(config);
        Executor = executor;
    }

    public Scheduler Scheduler { get; }
    public IModelExecutor Executor { get; }

    /// <summary>Requests to serve, finished ids to tell the runner, or a step still running.</summary>
    public bool HasWork => Scheduler.HasWork || _stepsInFlight > 0;

    /// <summary>No step is running and no request holds KV memory: the executor may give its memory back (sleep mode).</summary>
    public bool IsQuiet => _stepsInFlight == 0 && Scheduler.HoldsNoBlocks;

    public void AddRequest(Request request) => Scheduler.AddRequest(request);

    public void AbortRequests(IEnumerable<string> requestIds) => Scheduler.FinishRequests(requestIds, RequestStatus.FinishedAborted);

    public (List<EngineCoreOutput> Outputs, SchedulerStats Stats) Step()
    {
        SchedulerOutput schedulerOutput = Scheduler.Schedule();
        var outputs = new List<EngineCoreOutput>();
        // An empty schedule still goes to the runner when it carries finished ids to drop or copies to queue, a step is
        // running, or host-tier loads are (the runner reports them done; an empty step waits for one).
        if (!schedulerOutput.IsEmpty || schedulerOutput.FinishedRequestIds.Count > 0 || _stepsInFlight > 0
            || !schedulerOutput.KvTransfers.IsEmpty || Scheduler.KvCacheManager.HasPendingLoads)
        {
            _completed.Clear();
            if (Scheduler.Config.AsyncScheduling)
            {
                Executor.Submit(schedulerOutput, _completed);
            }
            else
            {
                _completed.Add(new CompletedStep(schedulerOutput, Executor.Execute(schedulerOutput)));
            }

            _stepsInFlight += 1 - _completed.Count;
            foreach (CompletedStep step in _completed)
            {
                outputs.AddRange(Scheduler.UpdateFromOutput(step.SchedulerOutput, step.RunnerOutput));
            }
        }

        return (outputs, Scheduler.TakeStats(schedulerOutput.TotalNumScheduledTokens));
    }

    public void Dispose() => Executor.Dispose();
}
