using Celer.Engine.Scheduling;

namespace Celer.Engine.Tests.Support;

/// <summary>Scheduler + <see cref="PagedTokenModelExecutor"/> stepped by hand, collecting what each request produced.</summary>
internal sealed class SchedulerLoop
{
    public SchedulerLoop(SchedulerConfig config, int vocabSize = 1000)
    {
        Scheduler = new Scheduler(config);
        Executor = new PagedTokenModelExecutor(config.NumKvBlocks, config.BlockSize, vocabSize);
    }

    public Scheduler Scheduler { get; }
    public PagedTokenModelExecutor Executor { get; }
    public Dictionary<string, List<int>> Generated { get; } = [];
    public Dictionary<string, EngineCoreOutput> Finished { get; } = [];
    public int FinishCount { get; private set; }

    public static SchedulerConfig Config(
        int numBlocks = 101, int blockSize = 4, int maxNumBatchedTokens = 64, int maxNumSeqs = 16,
        int maxModelLen = 256, SchedulingPolicy policy = SchedulingPolicy.Fcfs, bool chunkedPrefill = true, bool prefixCaching = true) =>
        new(maxNumSeqs, maxNumBatchedTokens, maxModelLen, blockSize, numBlocks, prefixCaching, chunkedPrefill, policy);

    public void Add(Request request)
    {
        Generated[request.RequestId] = [];
        Scheduler.AddRequest(request);
    }

    public SchedulerOutput Step()
    {
        SchedulerOutput output = Scheduler.Schedule();
        ModelRunnerOutput runnerOutput = Executor.Execute(output);
        foreach (EngineCoreOutput o in Scheduler.UpdateFromOutput(output, runnerOutput))
        {
            Generated[o.RequestId].AddRange(o.NewTokenIds);
            if (o.FinishReason is not null)
            {
                Assert.True(Finished.TryAdd(o.RequestId, o), $"{o.RequestId} finished twice");
                FinishCount++;
            }
        }
        return output;
    }

    public int RunToCompletion(int maxSteps = 10_000)
    {
        int steps = 0;
        while (Scheduler.HasUnfinishedRequests)
        {
            Step();
            Assert.True(++steps < maxSteps, "the scheduler made no progress");
        }
        return steps;
    }
}
