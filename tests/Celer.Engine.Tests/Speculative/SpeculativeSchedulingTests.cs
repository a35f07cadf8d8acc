using Celer.Engine.Scheduling;
using Celer.Engine.Tests.Support;

namespace Celer.Engine.Tests.Speculative;

/// <summary>
/// The scheduler's side of speculative decoding, step by step with runner outputs written by hand: drafts scheduled
/// with the request's next token (in its budget and KV slots), rolled back when rejected, never hashed into the prefix
/// cache, cut by the budget and by max_tokens.
/// </summary>
public sealed class SpeculativeSchedulingTests
{
    private static ModelRunnerOutput Output(string id, int[] sampled, int[]? drafts = null) =>
        new(new Dictionary<string, IReadOnlyList<int>> { [id] = sampled },
            DraftTokenIds: drafts is null ? null : new Dictionary<string, int[]> { [id] = drafts });

    [Fact]
    public void Rejected_drafts_are_rolled_back_and_never_reach_the_prefix_cache()
    {
        var scheduler = new Scheduler(SchedulerLoop.Config(blockSize: 4));
        int[] prompt = [11, 12, 13, 14, 15, 16];
        scheduler.AddRequest(TestRequests.Make("a", prompt, maxTokens: 20));
        Request request = scheduler.GetRequest("a")!;

        SchedulerOutput prefill = scheduler.Schedule();
        scheduler.UpdateFromOutput(prefill, Output("a", [17], drafts: [18, 19, 20]));
        Assert.Equal(6, request.NumComputedTokens);

        // The next token and its three drafts, in one step: 4 tokens, slots up to position 9.
        SchedulerOutput verify = scheduler.Schedule();
        Assert.Equal(4, verify.NumScheduledTokens["a"]);
        Assert.Equal([18, 19, 20], verify.ScheduledSpecTokens["a"]);
        Assert.Contains("a", verify.SampledRequestIds);
        Assert.Equal(3, scheduler.KvCacheManager.GetBlockIds("a").Count);   // positions 0..9 in blocks of 4

        // The first draft accepted, the second replaced by 42: two drafts' positions are computed again.
        scheduler.UpdateFromOutput(verify, Output("a", [18, 42]));
        Assert.Equal(8, request.NumComputedTokens);
        Assert.Equal([17, 18, 42], request.OutputTokenIds);
        Assert.Empty(request.SpecTokenIds);
        // Block 1 (positions 4..7) held the draft 18 at position 7 when it was scheduled: it was not hashed then.
        Assert.Single(request.BlockHashes);

        SchedulerOutput next = scheduler.Schedule();
        Assert.Equal(1, next.NumScheduledTokens["a"]);   // 42, and no drafts were proposed
        Assert.False(next.ScheduledSpecTokens.ContainsKey("a"));

        // Now it is, from the real tokens: the hashes of the same tokens decoded one at a time.
        var plain = new Scheduler(SchedulerLoop.Config(blockSize: 4));
        plain.AddRequest(TestRequests.Make("a", prompt, maxTokens: 20));
        foreach (int token in (int[])[17, 18, 42])
        {
            plain.UpdateFromOutput(plain.Schedule(), Output("a", [token]));
        }

        plain.Schedule();
        Assert.Equal(2, request.BlockHashes.Count);
        Assert.Equal(plain.GetRequest("a")!.BlockHashes, request.BlockHashes);
        SpecDecodingStats stats = scheduler.TakeStats(0).SpecDecoding;
        Assert.Equal((1L, 3L, 1L), (stats.NumDrafts, stats.NumDraftTokens, stats.NumAcceptedTokens));
        Assert.Equal([1L, 0L, 0L], stats.NumAcceptedTokensPerPosition);
    }

    [Fact]
    public void Drafts_are_cut_by_the_budget_and_by_max_tokens()
    {
        var scheduler = new Scheduler(SchedulerLoop.Config(blockSize: 4, maxNumBatchedTokens: 16));
        scheduler.AddRequest(TestRequests.Make("a", [1, 2, 3], maxTokens: 3));
        scheduler.AddRequest(TestRequests.Make("b", [4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16], maxTokens: 20));
        SchedulerOutput first = scheduler.Schedule();
        Assert.Equal((3, 13), (first.NumScheduledTokens["a"], first.NumScheduledTokens["b"]));
        var sampled = new Dictionary<string, IReadOnlyList<int>> { ["a"] = [7], ["b"] = [8] };
        var drafts = new Dictionary<string, int[]> { ["a"] = [1, 2, 3, 4], ["b"] = [9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9] };
        scheduler.UpdateFromOutput(first, new ModelRunnerOutput(sampled, DraftTokenIds: drafts));

        // a has 1 of its 3 tokens out: at most 1 draft, so its next step ends at max_tokens. b's drafts are cut to the
        // room left in the step (16 − a's 2 − b's own token).
        Assert.Equal([1], scheduler.GetRequest("a")!.SpecTokenIds);
        SchedulerOutput second = scheduler.Schedule();
        Assert.Equal([1], second.ScheduledSpecTokens["a"]);
        Assert.Equal(2, second.NumScheduledTokens["a"]);
        Assert.Equal(14, second.NumScheduledTokens["b"]);
        Assert.Equal(13, second.ScheduledSpecTokens["b"].Length);
    }
}
