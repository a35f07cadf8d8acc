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

    [Theory]
    [InlineData(SchedulingPolicy.Fcfs, 101)]
    [InlineData(SchedulingPolicy.Priority, 202)]
    public void RandomTraffic_EndsWithThePoolFull_AndEachRequestFinishedOnce(SchedulingPolicy policy, int seed)
    {
        var random = new Random(seed);
        // 40 usable blocks of 4 tokens (160 slots) for up to 8 sequences of up to 64 tokens.
        var loop = new SchedulerLoop(SchedulerLoop.Config(numBlocks: 41, blockSize: 4, maxNumBatchedTokens: 24, maxNumSeqs: 8, maxModelLen: 64, policy: policy), Vocab);
        int[][] sharedPrefixes = [.. Enumerable.Range(0, 5).Select(_ => TestRequests.RandomTokens(random, 12, Vocab))];
        var requests = new Dictionary<string, (int[] Prompt, int MaxTokens)>();
        var aborted = new HashSet<string>();
        var live = new List<string>();
        const int total = 1500;
        int added = 0;

        while (added < total || loop.Scheduler.HasUnfinishedRequests)
        {
            for (int k = random.Next(0, 4); k > 0 && added < total; k--)
            {
                string id = $"r{added++}";
                int[] suffix = TestRequests.RandomTokens(random, random.Next(1, 30), Vocab);
                int[] prompt = random.Next(2) == 0 ? [.. sharedPrefixes[random.Next(sharedPrefixes.Length)], .. suffix] : suffix;
                int maxTokens = random.Next(1, 64 - prompt.Length + 1);
                requests[id] = (prompt, maxTokens);
                loop.Add(TestRequests.Make(id, prompt, maxTokens: maxTokens, priority: random.Next(3), arrivalTime: added, cacheSalt: random.Next(10) == 0 ? "salt" : null));
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
        foreach ((string id, EngineCoreOutput output) in loop.Finished)
        {
            (int[] prompt, int maxTokens) = requests[id];
            Assert.Equal(FinishReason.Length, output.FinishReason);
            Assert.Equal(PagedTokenModelExecutor.ReferenceGeneration(prompt, maxTokens, Vocab), loop.Generated[id]);
        }
        BlockPoolFull(loop.Scheduler);
        Assert.Empty(loop.Executor.CachedRequestIds);
        Assert.True(loop.Executor.History.Sum(h => h.PreemptedRequestIds.Count) > 0, "the pool was meant to be small enough to preempt");
        Assert.True(loop.Executor.History.Sum(h => h.ScheduledNewRequests.Sum(r => r.NumComputedTokens)) > 0, "prefix hits were meant to happen");
    }

    /// <summary>Every held block's ref count equals the number of running requests holding it.</summary>
    private static void CheckBlockAccounting(Scheduler scheduler)
    {
        var holders = new Dictionary<int, int>();
        foreach (Request r in scheduler.Running)
        {
            foreach (int id in scheduler.KvCacheManager.GetBlockIds(r.RequestId))
            {
                holders[id] = holders.GetValueOrDefault(id) + 1;
            }
        }
        var pool = scheduler.KvCacheManager.BlockPool;
        for (int id = 1; id < pool.NumBlocks; id++)
        {
            Assert.Equal(holders.GetValueOrDefault(id), pool[id].RefCount);
        }
        Assert.Equal(pool.NumBlocks - 1 - holders.Count, pool.NumFreeBlocks);
    }

    private static void BlockPoolFull(Scheduler scheduler)
    {
        var pool = scheduler.KvCacheManager.BlockPool;
        Assert.Equal(pool.NumBlocks - 1, pool.NumFreeBlocks);
        Assert.Equal(Enumerable.Range(1, pool.NumBlocks - 1), pool.FreeBlocksInEvictionOrder().Select(b => b.BlockId).Order());
    }
}
