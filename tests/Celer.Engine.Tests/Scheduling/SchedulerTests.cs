using Celer.Engine.Scheduling;
using Celer.Engine.Tests.Support;

namespace Celer.Engine.Tests.Scheduling;

public class SchedulerTests
{
    private const int Vocab = 1000;
    private readonly Random _random = new(42);

    [Fact]
    public void ChunkedPrefill_SpreadsALongPromptOverStepsUnderTheBudget()
    {
        var loop = new SchedulerLoop(SchedulerLoop.Config(maxNumBatchedTokens: 8));
        int[] prompt = TestRequests.RandomTokens(_random, 20);
        loop.Add(TestRequests.Make("a", prompt, maxTokens: 3));

        SchedulerOutput s1 = loop.Step();
        Assert.Equal(8, s1.NumScheduledTokens["a"]);
        Assert.Empty(s1.SampledRequestIds);
        Assert.Equal([1, 2], s1.ScheduledNewRequests.Single().BlockIds);
        SchedulerOutput s2 = loop.Step();
        Assert.Equal(8, s2.NumScheduledTokens["a"]);
        Assert.Equal([3, 4], s2.ScheduledCachedRequests.Single().NewBlockIds);
        Assert.Empty(loop.Generated["a"]);
        SchedulerOutput s3 = loop.Step();
        Assert.Equal(4, s3.NumScheduledTokens["a"]);
        Assert.Equal(["a"], s3.SampledRequestIds);
        Assert.Single(loop.Generated["a"]);

        loop.RunToCompletion();
        Assert.Equal(PagedTokenModelExecutor.ReferenceGeneration(prompt, 3, Vocab), loop.Generated["a"]);
        Assert.Equal(FinishReason.Length, loop.Finished["a"].FinishReason);
    }

    [Fact]
    public void DecodesAndAPrefillChunk_ShareOneStep_RunningFirst()
    {
        var loop = new SchedulerLoop(SchedulerLoop.Config(maxNumBatchedTokens: 6));
        int[] promptA = TestRequests.RandomTokens(_random, 5);
        int[] promptB = TestRequests.RandomTokens(_random, 10);
        loop.Add(TestRequests.Make("a", promptA, maxTokens: 4));
        SchedulerOutput s1 = loop.Step();
        Assert.Equal(5, s1.NumScheduledTokens["a"]);

        loop.Add(TestRequests.Make("b", promptB, maxTokens: 2));
        SchedulerOutput s2 = loop.Step();
        Assert.Equal(1, s2.NumScheduledTokens["a"]); // decode
        Assert.Equal(5, s2.NumScheduledTokens["b"]); // first chunk of b's prompt fills the budget
        Assert.Equal(6, s2.TotalNumScheduledTokens);
        Assert.Equal(["a"], s2.SampledRequestIds);
        Assert.Empty(s2.ScheduledCachedRequests.Single().NewTokenIds);   // the runner keeps its own samples

        SchedulerOutput s3 = loop.Step();
        Assert.Equal(1, s3.NumScheduledTokens["a"]);
        Assert.Equal(5, s3.NumScheduledTokens["b"]);
        Assert.Equal(["a", "b"], s3.SampledRequestIds.Order());

        loop.RunToCompletion();
        Assert.Equal(PagedTokenModelExecutor.ReferenceGeneration(promptA, 4, Vocab), loop.Generated["a"]);
        Assert.Equal(PagedTokenModelExecutor.ReferenceGeneration(promptB, 2, Vocab), loop.Generated["b"]);
        Assert.Equal(100, loop.Scheduler.KvCacheManager.BlockPool.NumFreeBlocks);
    }

    [Fact]
    public void WithoutChunkedPrefill_APromptWaitsForAWholeBudget()
    {
        var loop = new SchedulerLoop(SchedulerLoop.Config(maxNumBatchedTokens: 12, chunkedPrefill: false));
        loop.Add(TestRequests.Make("a", TestRequests.RandomTokens(_random, 8), maxTokens: 5));
        loop.Add(TestRequests.Make("b", TestRequests.RandomTokens(_random, 8), maxTokens: 5));
        SchedulerOutput s1 = loop.Step();
        Assert.Equal(["a"], s1.NumScheduledTokens.Keys);
        SchedulerOutput s2 = loop.Step();
        Assert.Equal(1, s2.NumScheduledTokens["a"]);
        Assert.Equal(8, s2.NumScheduledTokens["b"]);
    }

    [Fact]
    public void MaxNumSeqs_LimitsTheBatch()
    {
        var loop = new SchedulerLoop(SchedulerLoop.Config(maxNumSeqs: 2));
        for (int i = 0; i < 3; i++)
        {
            loop.Add(TestRequests.Make($"r{i}", TestRequests.RandomTokens(_random, 4), maxTokens: 2));
        }
        Assert.Equal(["r0", "r1"], loop.Step().NumScheduledTokens.Keys.Order());
        Assert.Equal(1, loop.Scheduler.NumWaiting);
        loop.RunToCompletion();
        Assert.Equal(3, loop.FinishCount);
    }

    [Fact]
    public void Preemption_TakesTheNewestRequest_WhichResumesFromTheCacheAndFinishesCorrectly()
    {
        // 4 usable blocks of 4 tokens. a and b (6-token prompts) take 2 blocks each; in step 4
        // a computes position 8, which needs a third block, and b (the newest) is preempted.
        var loop = new SchedulerLoop(SchedulerLoop.Config(numBlocks: 5));
        int[] promptA = TestRequests.RandomTokens(_random, 6);
        int[] promptB = TestRequests.RandomTokens(_random, 6);
        loop.Add(TestRequests.Make("a", promptA, maxTokens: 6));
        loop.Add(TestRequests.Make("b", promptB, maxTokens: 5));

        SchedulerOutput s1 = loop.Step();
        Assert.Equal([1, 2], s1.ScheduledNewRequests[0].BlockIds);
        Assert.Equal([3, 4], s1.ScheduledNewRequests[1].BlockIds);
        Assert.Empty(loop.Step().PreemptedRequestIds); // positions 6
        Assert.Empty(loop.Step().PreemptedRequestIds); // positions 7: the second blocks are full
        SchedulerOutput s3 = loop.Step();
        Assert.Equal(["b"], s3.PreemptedRequestIds);
        Assert.Equal(["a"], s3.NumScheduledTokens.Keys);
        Assert.Equal([4], s3.ScheduledCachedRequests.Single().NewBlockIds); // b's freed tail block, reused first
        Request b = loop.Scheduler.GetRequest("b")!;
        Assert.Equal(RequestStatus.Preempted, b.Status);
        Assert.Equal(0, b.NumComputedTokens);
        Assert.Equal(1, b.NumPreemptions);
        Assert.Equal(1, loop.Scheduler.TakeStats(0).NumPreemptions);

        loop.RunToCompletion();
        CachedRequestData resumed = loop.Executor.History.SelectMany(h => h.ScheduledCachedRequests).Single(c => c.ResumedFromPreemption);
        Assert.Equal("b", resumed.RequestId);
        Assert.Equal(PagedTokenModelExecutor.ReferenceGeneration(promptA, 6, Vocab), loop.Generated["a"]);
        Assert.Equal(PagedTokenModelExecutor.ReferenceGeneration(promptB, 5, Vocab), loop.Generated["b"]);
        Assert.Equal(4, loop.Scheduler.KvCacheManager.BlockPool.NumFreeBlocks);
    }

    [Fact]
    public void PriorityPolicy_AdmitsLowerValuesFirst_AndPreemptsTheLowestPriority()
    {
        var loop = new SchedulerLoop(SchedulerLoop.Config(numBlocks: 5, policy: SchedulingPolicy.Priority, maxNumSeqs: 2));
        int[] promptLow = TestRequests.RandomTokens(_random, 6);
        int[] promptHigh = TestRequests.RandomTokens(_random, 6);
        int[] promptMid = TestRequests.RandomTokens(_random, 6);
        loop.Add(TestRequests.Make("low", promptLow, maxTokens: 6, priority: 5, arrivalTime: 1));
        loop.Add(TestRequests.Make("high", promptHigh, maxTokens: 6, priority: 0, arrivalTime: 2));
        loop.Add(TestRequests.Make("mid", promptMid, maxTokens: 2, priority: 1, arrivalTime: 3));

        SchedulerOutput s1 = loop.Step();
        Assert.Equal(["high", "mid"], s1.ScheduledNewRequests.Select(r => r.RequestId));
        loop.RunToCompletion();
        Assert.Equal(PagedTokenModelExecutor.ReferenceGeneration(promptLow, 6, Vocab), loop.Generated["low"]);
        Assert.Equal(PagedTokenModelExecutor.ReferenceGeneration(promptHigh, 6, Vocab), loop.Generated["high"]);

        // Both running, the pool runs dry: the older but lower-priority request is the victim.
        var loop2 = new SchedulerLoop(SchedulerLoop.Config(numBlocks: 5, policy: SchedulingPolicy.Priority));
        loop2.Add(TestRequests.Make("old-low", promptLow, maxTokens: 6, priority: 5, arrivalTime: 1));
        loop2.Add(TestRequests.Make("new-high", promptHigh, maxTokens: 6, priority: 0, arrivalTime: 2));
        loop2.Step();
        loop2.Step();
        loop2.Step();
        SchedulerOutput s3 = loop2.Step();
        Assert.Equal(["old-low"], s3.PreemptedRequestIds);
        loop2.RunToCompletion();
        Assert.Equal(PagedTokenModelExecutor.ReferenceGeneration(promptLow, 6, Vocab), loop2.Generated["old-low"]);
    }

    [Fact]
    public void PriorityPreemption_OfARequestAlreadyScheduledThisStep_ReturnsItsBudget()
    {
        // new-high is admitted after old-low, so it is later in the running list; when it needs a
        // block, the victim (old-low) was already scheduled in this step and must be unscheduled.
        var loop = new SchedulerLoop(SchedulerLoop.Config(numBlocks: 5, policy: SchedulingPolicy.Priority));
        loop.Add(TestRequests.Make("old-low", TestRequests.RandomTokens(_random, 6), maxTokens: 6, priority: 5, arrivalTime: 1));
        loop.Step();
        loop.Add(TestRequests.Make("new-high", TestRequests.RandomTokens(_random, 8), maxTokens: 6, priority: 0, arrivalTime: 2));
        loop.Step(); // old-low computes position 6, new-high prefills 8 tokens: all 4 blocks used
        SchedulerOutput s = loop.Step(); // old-low's position 7 fits; new-high's position 8 needs a block
        Assert.Equal(["old-low"], s.PreemptedRequestIds);
        Assert.Equal(["new-high"], s.NumScheduledTokens.Keys);
        Assert.Equal(s.NumScheduledTokens.Values.Sum(), s.TotalNumScheduledTokens);
        loop.RunToCompletion();
        Assert.Equal(2, loop.FinishCount);
    }

    [Fact]
    public void PrefixHitAtAdmission_SkipsTheCachedTokens()
    {
        var loop = new SchedulerLoop(SchedulerLoop.Config());
        int[] system = TestRequests.RandomTokens(_random, 12);
        loop.Add(TestRequests.Make("a", [.. system, 1, 2], maxTokens: 2));
        loop.RunToCompletion();
        int[] promptB = [.. system, 7, 8, 9];
        loop.Add(TestRequests.Make("b", promptB, maxTokens: 2));
        SchedulerOutput s = loop.Step();
        Assert.Equal(3, s.NumScheduledTokens["b"]);
        Assert.Equal(12, s.ScheduledNewRequests.Single().NumComputedTokens);
        Assert.Equal([1, 2, 3, 5], s.ScheduledNewRequests.Single().BlockIds);
        loop.RunToCompletion();
        Assert.Equal(12, loop.Finished["b"].NumCachedTokens);
        Assert.Equal(PagedTokenModelExecutor.ReferenceGeneration(promptB, 2, Vocab), loop.Generated["b"]);
    }

    [Fact]
    public void Abort_FreesBlocksWhetherWaitingOrRunning_AndTellsTheRunner()
    {
        var loop = new SchedulerLoop(SchedulerLoop.Config(maxNumSeqs: 1));
        loop.Add(TestRequests.Make("a", TestRequests.RandomTokens(_random, 9), maxTokens: 50));
        loop.Add(TestRequests.Make("b", TestRequests.RandomTokens(_random, 9), maxTokens: 50));
        loop.Step();
        Assert.Equal(97, loop.Scheduler.KvCacheManager.BlockPool.NumFreeBlocks);
        loop.Scheduler.FinishRequests(["a", "b", "unknown"], RequestStatus.FinishedAborted);
        Assert.Equal(100, loop.Scheduler.KvCacheManager.BlockPool.NumFreeBlocks);
        Assert.False(loop.Scheduler.HasUnfinishedRequests);
        Assert.True(loop.Scheduler.HasWork);
        SchedulerOutput s = loop.Step();
        Assert.Equal(["a", "b"], s.FinishedRequestIds.Order());
        Assert.True(s.IsEmpty);
        Assert.Empty(loop.Executor.CachedRequestIds);
        Assert.False(loop.Scheduler.HasWork);
    }

    [Fact]
    public void StopConditions_OnTokenIds()
    {
        int[] prompt = TestRequests.RandomTokens(_random, 5);
        List<int> reference = PagedTokenModelExecutor.ReferenceGeneration(prompt, 40, Vocab);
        int third = reference[2];
        int firstIndexOfThird = reference.IndexOf(third);

        // EOS = the third generated token: finishes with stop and no stop reason.
        var eos = RunOne(TestRequests.Make("eos", prompt, maxTokens: 40, eosTokenId: third));
        Assert.Equal((FinishReason.Stop, null, firstIndexOfThird + 1), (eos.Output.FinishReason, eos.Output.StopReason, eos.Tokens.Count));

        // ignore_eos runs to max_tokens.
        var ignore = RunOne(TestRequests.Make("ign", prompt, maxTokens: 40, eosTokenId: third,
            samplingParams: new SamplingParams { IgnoreEos = true, MaxTokens = 40 }));
        Assert.Equal((FinishReason.Length, 40), (ignore.Output.FinishReason, ignore.Tokens.Count));

        // A stop token id reports itself as the stop reason.
        var stopId = RunOne(TestRequests.Make("sid", prompt, maxTokens: 40,
            samplingParams: new SamplingParams { StopTokenIds = [third], MaxTokens = 40 }));
        Assert.Equal((FinishReason.Stop, (object)third), (stopId.Output.FinishReason!.Value, stopId.Output.StopReason!));

        // min_tokens: EOS before it is just a token.
        var min = RunOne(TestRequests.Make("min", prompt, maxTokens: 40, eosTokenId: reference[0],
            samplingParams: new SamplingParams { MinTokens = 3, MaxTokens = 40 }));
        int expected = reference.Skip(3).ToList().IndexOf(reference[0]);
        Assert.Equal(expected < 0 ? 40 : expected + 4, min.Tokens.Count);

        // max_model_len caps the whole sequence: 5 prompt tokens + 11 generated = 16.
        var loop = new SchedulerLoop(SchedulerLoop.Config(maxModelLen: 16));
        loop.Add(TestRequests.Make("len", prompt, maxTokens: 11));
        loop.RunToCompletion();
        Assert.Equal(11, loop.Generated["len"].Count);
        Assert.Equal(FinishReason.Length, loop.Finished["len"].FinishReason);
    }

    private static (EngineCoreOutput Output, List<int> Tokens) RunOne(Request request)
    {
        var loop = new SchedulerLoop(SchedulerLoop.Config());
        loop.Add(request);
        loop.RunToCompletion();
        return (loop.Finished[request.RequestId], loop.Generated[request.RequestId]);
    }
}
