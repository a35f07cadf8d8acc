using Celer.Engine.KvCache;
using Celer.Engine.Scheduling;
using Celer.Engine.Tests.Support;

namespace Celer.Engine.Tests.Scheduling;

/// <summary>
/// The scheduler with a host KV tier, over <see cref="PagedTokenModelExecutor"/>, whose loads finish some calls after
/// they are queued and which throws if a step touches a block still loading: conversations that return after the small
/// device pool evicted them load their prefix back instead of computing it, are never scheduled before it is back, and
/// generate exactly the reference tokens; preemption by swapping brings computed blocks back.
/// </summary>
public class KvOffloadSchedulingTests
{
    private const int Vocab = 1000;
    private const int PromptLen = 20;   // five full blocks of 4
    private readonly Random _random = new(77);

    /// <summary>16 usable blocks of 4 tokens: about two and a half of the conversations below.</summary>
    private static SchedulerLoop SmallPool(int numHostBlocks, bool asyncScheduling = false, int loadLatency = 3)
    {
        var loop = new SchedulerLoop(SchedulerLoop.Config(
            numBlocks: 17, blockSize: 4, maxNumBatchedTokens: 32, maxNumSeqs: 4, maxModelLen: 64, numHostBlocks: numHostBlocks, asyncScheduling: asyncScheduling), Vocab);
        loop.Executor.LoadLatency = loadLatency;
        return loop;
    }

    /// <summary>
    /// Six conversations of three turns, one request at a time, round robin; each later turn is the conversation so far
    /// plus three new tokens. Returns each request's output, by id "c{conversation}t{turn}".
    /// </summary>
    private static Dictionary<string, EngineCoreOutput> Converse(SchedulerLoop loop, Dictionary<string, int[]> prompts)
    {
        var random = new Random(5);
        var histories = Enumerable.Range(0, 6).Select(_ => TestRequests.RandomTokens(random, PromptLen, Vocab).ToList()).ToList();
        for (int turn = 0; turn < 3; turn++)
        {
            for (int c = 0; c < histories.Count; c++)
            {
                if (turn > 0)
                {
                    histories[c].AddRange(TestRequests.RandomTokens(random, 3, Vocab));
                }
                string id = $"c{c}t{turn}";
                prompts[id] = [.. histories[c]];
                loop.Add(TestRequests.Make(id, prompts[id], maxTokens: 4));
                loop.RunToCompletion();
                histories[c].AddRange(loop.Generated[id]);
            }
        }
        return loop.Finished;
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void ReturningConversations_LoadTheirPrefixFromTheHostTier_AndGenerateTheReference(bool asyncScheduling)
    {
        var withHost = SmallPool(numHostBlocks: 64, asyncScheduling);
        var withoutHost = SmallPool(numHostBlocks: 0, asyncScheduling);
        var prompts = new Dictionary<string, int[]>();
        Dictionary<string, EngineCoreOutput> hosted = Converse(withHost, prompts);
        Dictionary<string, EngineCoreOutput> recomputed = Converse(withoutHost, []);

        foreach ((string id, int[] prompt) in prompts)
        {
            List<int> expected = PagedTokenModelExecutor.ReferenceGeneration(prompt, 4, Vocab);
            Assert.Equal(expected, withHost.Generated[id]);
            Assert.Equal(expected, withoutHost.Generated[id]);
        }

        // Each returning turn finds at least its previous prompt's five full blocks (device or host); without the tier
        // the pool evicted the earlier conversations before they returned.
        string[] returning = [.. prompts.Keys.Where(id => !id.EndsWith("t0", StringComparison.Ordinal))];
        Assert.All(returning, id => Assert.True(hosted[id].NumCachedTokens >= PromptLen, $"{id}: {hosted[id].NumCachedTokens} cached tokens"));
        Assert.True(returning.Count(id => recomputed[id].NumCachedTokens == 0) >= 6, "the device pool was meant to evict returning conversations");
        KvOffloadStats stats = withHost.Scheduler.KvCacheManager.TakeOffloadStats();
        Assert.True(stats.Hits >= 6 * PromptLen, $"{stats.Hits} tokens loaded from the host tier");
        Assert.Equal(stats.LoadedBlocks, withHost.Executor.NumLoadedBlocks);
        Assert.Equal(stats.StoredBlocks, withHost.Executor.NumStoredBlocks);
        Assert.True(withHost.Executor.History.Sum(s => s.TotalNumScheduledTokens) < withoutHost.Executor.History.Sum(s => s.TotalNumScheduledTokens));
        Assert.Equal(16, withHost.Scheduler.KvCacheManager.BlockPool.NumFreeBlocks);
        Assert.Equal(64, withHost.Scheduler.KvCacheManager.Host!.NumAvailableBlocks);
    }

    /// <summary>A conversation whose first turn went through the pool and was evicted into the host tier by others.</summary>
    private (int[] Prompt, List<int> Reply) EvictedConversation(SchedulerLoop loop)
    {
        int[] prompt = TestRequests.RandomTokens(_random, PromptLen, Vocab);
        loop.Add(TestRequests.Make("first", prompt, maxTokens: 4));
        loop.RunToCompletion();
        for (int i = 0; i < 3; i++)
        {
            loop.Add(TestRequests.Make($"filler{i}", TestRequests.RandomTokens(_random, 40, Vocab), maxTokens: 4));
            loop.RunToCompletion();
        }
        Assert.True(loop.Scheduler.KvCacheManager.Host!.NumUsedBlocks >= 5);
        return (prompt, loop.Generated["first"]);
    }

    [Fact]
    public void ALoadingRequest_IsScheduledOnlyAfterItsLoad_WhileOthersRunMeanwhile()
    {
        var loop = SmallPool(numHostBlocks: 64, loadLatency: 3);
        (int[] prompt, List<int> reply) = EvictedConversation(loop);
        int[] next = [.. prompt, .. reply, 5, 6, 7];
        loop.Add(TestRequests.Make("next", next, maxTokens: 3));
        loop.Add(TestRequests.Make("other", TestRequests.RandomTokens(_random, 6, Vocab), maxTokens: 8));

        SchedulerOutput queued = loop.Step();
        KvLoad load = Assert.Single(queued.KvTransfers.Loads);
        Assert.Equal(5, load.Blocks.Count);   // the prompt's five full blocks; the reply's tokens were never a full block
        Assert.Equal(["other"], queued.NumScheduledTokens.Keys);
        Assert.Equal(["next"], loop.Scheduler.Loading.Select(r => r.RequestId));
        Assert.Equal(2, loop.Scheduler.NumWaiting + loop.Scheduler.NumRunning);

        // Due three calls after the one that queued it: the scheduler learns it in that call's output.
        for (int i = 0; i < 3; i++)
        {
            Assert.DoesNotContain("next", loop.Step().NumScheduledTokens.Keys);
        }
        SchedulerOutput resumed = loop.Step();
        NewRequestData data = Assert.Single(resumed.ScheduledNewRequests);
        Assert.Equal("next", data.RequestId);
        Assert.Equal(PromptLen, data.NumComputedTokens);
        Assert.Equal(next.Length - PromptLen, resumed.NumScheduledTokens["next"]);

        loop.RunToCompletion();
        Assert.Equal(PagedTokenModelExecutor.ReferenceGeneration(next, 3, Vocab), loop.Generated["next"]);
        Assert.Equal(PromptLen, loop.Finished["next"].NumCachedTokens);
    }

    [Fact]
    public void AnAbortWhileLoading_FreesTheBlocksOnlyOnceTheLoadIsDone()
    {
        var loop = SmallPool(numHostBlocks: 64, loadLatency: 2);
        (int[] prompt, List<int> reply) = EvictedConversation(loop);
        loop.Add(TestRequests.Make("next", [.. prompt, .. reply, 5], maxTokens: 3));
        // Another request keeps the steps busy: a step with nothing to compute would wait for the load.
        loop.Add(TestRequests.Make("other", TestRequests.RandomTokens(_random, 3, Vocab), maxTokens: 8));
        Assert.Single(loop.Step().KvTransfers.Loads);
        KvCacheManager manager = loop.Scheduler.KvCacheManager;
        Assert.Equal(10, manager.BlockPool.NumFreeBlocks);   // five loading, one for "other"

        loop.Scheduler.FinishRequests(["next"], RequestStatus.FinishedAborted);

        Assert.Empty(loop.Scheduler.Loading);
        Assert.Equal(10, manager.BlockPool.NumFreeBlocks);   // the copies still write them
        loop.Step();
        Assert.Equal(10, manager.BlockPool.NumFreeBlocks);
        loop.Step();   // the load is due: its blocks are free now
        Assert.Equal(16 - manager.GetBlockIds("other").Count, manager.BlockPool.NumFreeBlocks);
        Assert.True(loop.HasWork);
        loop.RunToCompletion();
        Assert.False(manager.HasPendingLoads);
        Assert.Equal(16, manager.BlockPool.NumFreeBlocks);
        Assert.Equal(64, manager.Host!.NumAvailableBlocks);
    }

    /// <summary>
    /// A request whose load finished waits with its blocks behind one that needs the whole pool (higher priority, whole
    /// prompts only), and nothing runs: the loaded blocks must be let go, or neither ever runs. They stay cached, and the
    /// request finds them again (here in the host tier) once the pool has room.
    /// </summary>
    [Fact]
    public void ALoadedRequest_LetsItsBlocksGo_WhenTheRequestAheadOfItNeedsThem()
    {
        var loop = new SchedulerLoop(SchedulerLoop.Config(
            numBlocks: 17, blockSize: 4, maxNumBatchedTokens: 64, maxNumSeqs: 4, maxModelLen: 64, policy: SchedulingPolicy.Priority,
            chunkedPrefill: false, numHostBlocks: 64), Vocab);
        loop.Executor.LoadLatency = 1;
        (int[] prompt, List<int> reply) = EvictedConversation(loop);
        int[] next = [.. prompt, .. reply, 5, 6, 7];
        loop.Add(TestRequests.Make("next", next, maxTokens: 3, priority: 1));
        Assert.Single(loop.Step().KvTransfers.Loads);
        int[] big = TestRequests.RandomTokens(_random, 60, Vocab);
        loop.Add(TestRequests.Make("big", big, maxTokens: 2, priority: 0));   // 62 tokens: all 16 blocks

        loop.RunToCompletion(maxSteps: 50);

        Assert.Equal(PagedTokenModelExecutor.ReferenceGeneration(big, 2, Vocab), loop.Generated["big"]);
        Assert.Equal(PagedTokenModelExecutor.ReferenceGeneration(next, 3, Vocab), loop.Generated["next"]);
        Assert.Equal(PromptLen, loop.Finished["next"].NumCachedTokens);
        Assert.Equal(16, loop.Scheduler.KvCacheManager.BlockPool.NumFreeBlocks);
    }

    /// <summary>
    /// Four requests that together need more than the 12 blocks: preemption is certain. With swapping a preempted request's
    /// computed blocks come back from the host tier (so fewer tokens are computed in all); without room in the tier
    /// (two blocks) it falls back to recompute. Prefix caching is off, so nothing but the swap can bring blocks back.
    /// </summary>
    [Theory]
    [InlineData(PreemptionMode.Swap, 64, false)]
    [InlineData(PreemptionMode.Swap, 64, true)]
    [InlineData(PreemptionMode.Swap, 2, false)]
    [InlineData(PreemptionMode.Recompute, 0, false)]
    public void PreemptedRequests_GenerateTheReference_SwappedOrRecomputed(PreemptionMode mode, int numHostBlocks, bool asyncScheduling)
    {
        var loop = new SchedulerLoop(SchedulerLoop.Config(
            numBlocks: 13, blockSize: 4, maxNumBatchedTokens: 64, maxNumSeqs: 4, maxModelLen: 48, prefixCaching: false,
            asyncScheduling: asyncScheduling, numHostBlocks: numHostBlocks, preemptionMode: mode), Vocab);
        loop.Executor.LoadLatency = 1;
        var prompts = Enumerable.Range(0, 4).Select(_ => TestRequests.RandomTokens(_random, 12, Vocab)).ToArray();
        for (int i = 0; i < prompts.Length; i++)
        {
            loop.Add(TestRequests.Make($"r{i}", prompts[i], maxTokens: 24));
        }

        loop.RunToCompletion();

        for (int i = 0; i < prompts.Length; i++)
        {
            Assert.Equal(PagedTokenModelExecutor.ReferenceGeneration(prompts[i], 24, Vocab), loop.Generated[$"r{i}"]);
        }
        List<SchedulerOutput> history = loop.Executor.History;
        Assert.True(history.Sum(s => s.PreemptedRequestIds.Count) > 0, "the pool was meant to be small enough to preempt");
        List<CachedRequestData> resumptions = [.. history.SelectMany(s => s.ScheduledCachedRequests).Where(r => r.ResumedFromPreemption)];
        Assert.NotEmpty(resumptions);
        if (mode == PreemptionMode.Swap && numHostBlocks == 64)
        {
            Assert.All(resumptions, r => Assert.True(r.NumComputedTokens > 0, $"{r.RequestId} resumed from nothing"));
            Assert.True(loop.Executor.NumLoadedBlocks > 0);
        }
        else
        {
            Assert.All(resumptions, r => Assert.Equal(0, r.NumComputedTokens));
            Assert.Equal(0, loop.Executor.NumLoadedBlocks);
        }
        Assert.Equal(12, loop.Scheduler.KvCacheManager.BlockPool.NumFreeBlocks);
        Assert.Equal(numHostBlocks, loop.Scheduler.KvCacheManager.Host?.NumAvailableBlocks ?? 0);
    }

    [Fact]
    public void Swapping_ComputesFewerTokensThanRecomputing()
    {
        int Computed(PreemptionMode mode, int numHostBlocks)
        {
            var random = new Random(9);
            var loop = new SchedulerLoop(SchedulerLoop.Config(
                numBlocks: 13, blockSize: 4, maxNumBatchedTokens: 64, maxNumSeqs: 4, maxModelLen: 48, prefixCaching: false,
                numHostBlocks: numHostBlocks, preemptionMode: mode), Vocab);
            for (int i = 0; i < 4; i++)
            {
                loop.Add(TestRequests.Make($"r{i}", TestRequests.RandomTokens(random, 12, Vocab), maxTokens: 24));
            }
            loop.RunToCompletion();
            return loop.Executor.History.Sum(s => s.TotalNumScheduledTokens);
        }

        int swapped = Computed(PreemptionMode.Swap, 64), recomputed = Computed(PreemptionMode.Recompute, 0);
        Assert.True(swapped < recomputed, $"swap computed {swapped} tokens, recompute {recomputed}");
        Assert.Equal(4 * (12 + 24 - 1), swapped);   // every position once: nothing is recomputed
    }
}
