using Celer.Engine.Scheduling;

namespace Celer.Engine.Tests.Support;

/// <summary>Scheduler + <see cref="PagedTokenModelExecutor"/> stepped by hand, collecting what each request produced.</summary>
internal sealed class SchedulerLoop
{
    public SchedulerLoop(SchedulerConfig config, int vocabSize = 1000)
    {
        Scheduler = new Scheduler(config);
        Executor = new PagedTokenModelExecutor(config.NumKvBlocks, config.BlockSize, vocabSize, numHostKvBlocks: config.NumHostKvBlocks);
    }

    public Scheduler Scheduler { get; }
    public PagedTokenModelExecutor Executor { get; }
    public Dictionary<string, List<int>> Generated { get; } = [];
    public Dictionary<string, EngineCoreOutput> Finished { get; } = [];
    public int FinishCount { get; private set; }

    public static SchedulerConfig Config(
        int numBlocks = 101, int blockSize = 4, int maxNumBatchedTokens = 64, int maxNumSeqs = 16,
        int maxModelLen = 256, SchedulingPolicy policy = SchedulingPolicy.Fcfs, bool chunkedPrefill = true, bool prefixCaching = true,
        bool asyncScheduling = false, int numHostBlocks = 0, PreemptionMode preemptionMode = PreemptionMode.Recompute) =>
        new(maxNumSeqs, maxNumBatchedTokens, maxModelLen, blockSize, numBlocks, prefixCaching, chunkedPrefill, policy, asyncScheduling,
            NumHostKvBlocks: numHostBlocks, PreemptionMode: preemptionMode);

    public void Add(Request request)
    {
        Generated[request.RequestId] = [];
        Scheduler.AddRequest(request);
    }

    public SchedulerOutput Step()
    {
        SchedulerOutput output = Scheduler.Schedule();
        var completed = new List<CompletedStep>();
        if (Scheduler.Config.AsyncScheduling)
        {
            Executor.Submit(output, completed);
        }
        else
        {
            completed.Add(new CompletedStep(output, Executor.Execute(output)));
        }

        foreach ((SchedulerOutput done, ModelRunnerOutput runnerOutput) in completed)
        {
            foreach (EngineCoreOutput o in Scheduler.UpdateFromOutput(done, runnerOutput))
            {
                Generated[o.RequestId].AddRange(o.NewTokenIds);
                if (o.FinishReason is not null)
                {
                    Assert.True(Finished.TryAdd(o.RequestId, o), $"{o.RequestId} finished twice");
                    FinishCount++;
                }
            }
        }
        return output;
    }

    /// <summary>Whether requests are unfinished, loads are running, or a step's output is still to come.</summary>
    public bool HasWork => Scheduler.HasUnfinishedRequests || Scheduler.KvCacheManager.HasPendingLoads || Executor.HasStepInFlight;

    public int RunToCompletion(int maxSteps = 10_000)
    {
        int steps = 0;
        while (HasWork)
        {
            Step();
            Assert.True(++steps < maxSteps, "the scheduler made no progress");
        }
        return steps;
    }
}
