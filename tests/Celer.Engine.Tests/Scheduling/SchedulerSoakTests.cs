using Celer.Engine.Scheduling;
using Celer.Engine.Tests.Support;

namespace Celer.Engine.Tests.Scheduling;

/// <summary>
/// Thousands of requests with random lengths, shared prefixes and aborts at random moments on a
/// small pool, so preemption, prefix hits and eviction all happen constantly. Every request must
/// finish exactly once, every one not aborted must generate exactly the reference tokens (the
/// executor reads each sequence back through its block table), and at the end every block is free.
/// </summary>
public class SchedulerSoakTests
{
    private const int Vocab = 500;

    /// <summary>
    /// With async scheduling each step is scheduled before the previous step's tokens arrive (the executor holds
    /// each output back one call), and some requests stop at a stop token, so steps are scheduled for requests that
    /// already stopped, preempted requests get their last token after the preemption, and aborts land between.
    /// With a host tier, evicted blocks are stored and loaded back (each load finishing two calls later, the executor
    /// throwing if a step touches a block still loading), aborts land on loading requests too, and with swapping
    /// preempted requests come back from it; a 12-block tier is often too full of pinned blocks to take a swap.
    /// </summary>
    [Theory]
    [InlineData(SchedulingPolicy.Fcfs, 101, false, 0, PreemptionMode.Recompute)]
    [InlineData(SchedulingPolicy.Priority, 202, false, 0, PreemptionMode.Recompute)]
    [InlineData(SchedulingPolicy.Fcfs, 303, true, 0, PreemptionMode.Recompute)]
    [InlineData(SchedulingPolicy.Priority, 404, true, 0, PreemptionMode.Recompute)]
    [InlineData(SchedulingPolicy.Fcfs, 505, false, 60, PreemptionMode.Recompute)]
    [InlineData(SchedulingPolicy.Priority, 606, true, 60, PreemptionMode.Swap)]
    [InlineData(SchedulingPolicy.Fcfs, 707, true, 60, PreemptionMode.Swap)]
    [InlineData(SchedulingPolicy.Priority, 808, false, 12, PreemptionMode.Swap)]
    public void RandomTraffic_EndsWithThePoolFull_AndEachRequestFinishedOnce(
        SchedulingPolicy policy, int seed, bool asyncScheduling, int numHostBlocks, PreemptionMode preemptionMode)
    {
        var random = new Random(seed);
        // 40 usable blocks of 4 tokens (160 slots) for up to 8 sequences of up to 64 tokens.
        var loop = new SchedulerLoop(SchedulerLoop.Config(
            numBlocks: 41, blockSize: 4, maxNumBatchedTokens: 24, maxNumSeqs: 8, maxModelLen: 64, policy: policy, asyncScheduling: asyncScheduling,
            numHostBlocks: numHostBlocks, preemptionMode: preemptionMode), Vocab);
        int[][] sharedPrefixes = [.. Enumerable.Range(0, 5).Select(_ => TestRequests.RandomTokens(random, 12, Vocab))];
        var requests = new Dictionary<string, (int[] Prompt, int MaxTokens, int[] Stops)>();
        var aborted = new HashSet<string>();
        var live = new List<string>();
        const int total = 1500;
        int added = 0;

        while (added < total || loop.HasWork)
        {
            for (int k = random.Next(0, 4); k > 0 && added < total; k--)
            {
                string id = $"r{added++}";
                int[] suffix = TestRequests.RandomTokens(random, random.Next(1, 30), Vocab);
                int[] prompt = random.Next(2) == 0 ? [.. sharedPrefixes[random.Next(sharedPrefixes.Length)], .. suffix] : suffix;
                int maxTokens = random.Next(1, 64 - prompt.Length + 1);
                // The toy model draws about uniformly from the vocabulary: ten stop ids end about one token in fifty.
                int[] stops = asyncScheduling && random.Next(2) == 0 ? TestRequests.RandomTokens(random, 10, Vocab) : [];
                requests[id] = (prompt, maxTokens, stops);
                loop.Add(TestRequests.Make(
                    id, prompt, maxTokens: maxTokens, priority: random.Next(3), arrivalTime: added, cacheSalt: random.Next(10) == 0 ? "salt" : null,
                    samplingParams: new SamplingParams { MaxTokens = maxTokens, StopTokenIds = stops }));
                live.Add(id);
            }
            if (live.Count > 0 && random.Next(8) == 0)
            {
                string victim = live[random.Next(live.Count)];
                if (!loop.Finished.ContainsKey(victim))
                {
                    loop.Scheduler.FinishRequests([victim], RequestStatus.FinishedAborted);
                    aborted.Add(victim);
                }
            }
            loop.Step();
            live.RemoveAll(id => loop.Finished.ContainsKey(id) || aborted.Contains(id));
            CheckBlockAccounting(loop.Scheduler);
        }
        loop.Step(); // hands the last finished ids to the runner

        Assert.Equal(total, loop.Finished.Count + aborted.Count);
        Assert.Empty(loop.Finished.Keys.Intersect(aborted));
        int stoppedEarly = 0;
        foreach ((string id, EngineCoreOutput output) in loop.Finished)
        {
            (int[] prompt, int maxTokens, int[] stops) = requests[id];
            List<int> expected = PagedTokenModelExecutor.ReferenceGeneration(prompt, maxTokens, Vocab);
            int stop = expected.FindIndex(stops.Contains);
            if (stop >= 0)
            {
                expected = expected[..(stop + 1)];
                stoppedEarly++;
            }
            // The length cap is checked first (vLLM's check_stop): an EOS as the last allowed token is a length finish.
            Assert.Equal(stop >= 0 && stop < maxTokens - 1 ? FinishReason.Stop : FinishReason.Length, output.FinishReason);
            Assert.Equal(expected, loop.Generated[id]);
        }
        Assert.True(!asyncScheduling || stoppedEarly > 20, $"only {stoppedEarly} requests stopped at a stop token");
        BlockPoolFull(loop.Scheduler);
        Assert.Empty(loop.Executor.CachedRequestIds);
        Assert.True(loop.Executor.History.Sum(h => h.PreemptedRequestIds.Count) > 0, "the pool was meant to be small enough to preempt");
        Assert.True(loop.Executor.History.Sum(h => h.ScheduledNewRequests.Sum(r => r.NumComputedTokens)) > 0, "prefix hits were meant to happen");
        if (numHostBlocks > 0)
        {
            Assert.True(loop.Executor.NumLoadedBlocks > 0, "the host tier was meant to be loaded from");
            Assert.Equal(numHostBlocks, loop.Scheduler.KvCacheManager.Host!.NumAvailableBlocks);   // no pin left behind
        }
        if (preemptionMode == PreemptionMode.Swap)
        {
            Assert.Contains(loop.Executor.History.SelectMany(h => h.ScheduledCachedRequests), r => r.ResumedFromPreemption && r.NumComputedTokens > 0);
        }
    }

    /// <summary>
    /// Every held block's ref count equals the number of requests holding it: running ones, and with a host tier
    /// loading ones and waiting ones whose prefix was loaded. An aborted request's blocks stay out of the free queue
    /// until its load is done, so while loads run the free queue may be shorter.
    /// </summary>
    private static void CheckBlockAccounting(Scheduler scheduler)
    {
        var holders = new Dictionary<int, int>();
        foreach (Request r in scheduler.Running.Concat(scheduler.Waiting).Concat(scheduler.Loading))
        {
            foreach (int id in scheduler.KvCacheManager.GetBlockIds(r.RequestId))
            {
                holders[id] = holders.GetValueOrDefault(id) + 1;
            }
        }
        var pool = scheduler.KvCacheManager.BlockPool;
        bool abandonedLoads = scheduler.KvCacheManager.HasPendingLoads;
        for (int id = 1; id < pool.NumBlocks; id++)
        {
            if (abandonedLoads)
            {
                Assert.True(pool[id].RefCount >= holders.GetValueOrDefault(id));
            }
            else
            {
                Assert.Equal(holders.GetValueOrDefault(id), pool[id].RefCount);
            }
        }
        if (!abandonedLoads)
        {
            Assert.Equal(pool.NumBlocks - 1 - holders.Count, pool.NumFreeBlocks);
        }
    }

    private static void BlockPoolFull(Scheduler scheduler)
    {
        var pool = scheduler.KvCacheManager.BlockPool;
        Assert.Equal(pool.NumBlocks - 1, pool.NumFreeBlocks);
        Assert.Equal(Enumerable.Range(1, pool.NumBlocks - 1), pool.FreeBlocksInEvictionOrder().Select(b => b.BlockId).Order());
    }
}
