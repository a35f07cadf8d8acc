using Celer.Engine.KvCache;
using Celer.Engine.Scheduling;
using Celer.Engine.Tests.Support;

namespace Celer.Engine.Tests.KvCache;

/// <summary>Exact block ids and eviction order, in the manner of vLLM's tests/v1/core/test_prefix_caching.py.
/// Block size 4 and 11 blocks (10 usable: block 0 is the null block) throughout.</summary>
public class KvCacheManagerTests
{
    private const int BlockSize = 4;
    private readonly Random _random = new(1234);

    private static KvCacheManager NewManager(int numBlocks = 11, bool prefixCaching = true) =>
        new(numBlocks, BlockSize, maxModelLen: 1024, prefixCaching);

    /// <summary>Admits a request the way the scheduler does: prefix lookup, then allocation.</summary>
    private static IReadOnlyList<int> Admit(KvCacheManager manager, Request request, out int numHitTokens)
    {
        (IReadOnlyList<KvCacheBlock> hits, numHitTokens) = manager.GetComputedBlocks(request);
        IReadOnlyList<KvCacheBlock> newBlocks = manager.AllocateSlots(request, request.NumTokens - numHitTokens, numHitTokens, hits)
            ?? throw new InvalidOperationException("no room");
        request.NumComputedTokens = request.NumTokens;
        return newBlocks.Select(b => b.BlockId).ToArray();
    }

    [Fact]
    public void PrefixHit_ReusesFullBlocksOnly_AndSharesRefCounts()
    {
        KvCacheManager manager = NewManager();
        int[] common = TestRequests.RandomTokens(_random, 8);
        var a = TestRequests.Make("a", [.. common, 501, 502, 503]);
        Assert.Equal([1, 2, 3], Admit(manager, a, out int hitA));
        Assert.Equal(0, hitA);
        Assert.Equal(2, manager.BlockPool.NumCachedBlocks); // the partial third block is not cached

        var b = TestRequests.Make("b", [.. common, 601, 602]);
        Assert.Equal([4], Admit(manager, b, out int hitB));
        Assert.Equal(8, hitB);
        Assert.Equal([1, 2, 4], manager.GetBlockIds("b"));
        Assert.Equal(2, manager.BlockPool[1].RefCount);
        Assert.Equal(2, manager.BlockPool[2].RefCount);
        Assert.Equal(1, manager.BlockPool[3].RefCount);
        Assert.Equal(new PrefixCacheStats(2, 11 + 10, 8), manager.TakePrefixCacheStats());
        Assert.Equal(new PrefixCacheStats(0, 0, 0), manager.TakePrefixCacheStats());
    }

    [Fact]
    public void PrefixHit_IsCappedSoTheLastPromptTokenIsRecomputed()
    {
        KvCacheManager manager = NewManager();
        int[] prompt = TestRequests.RandomTokens(_random, 8);
        Admit(manager, TestRequests.Make("a", prompt), out _);

        // Same 8 tokens: both blocks are cached, but only the first may be a hit.
        var b = TestRequests.Make("b", prompt);
        (IReadOnlyList<KvCacheBlock> hits, int numTokens) = manager.GetComputedBlocks(b);
        Assert.Equal([1], hits.Select(h => h.BlockId));
        Assert.Equal(4, numTokens);

        // One more token: now both full blocks are hits.
        var c = TestRequests.Make("c", [.. prompt, 77]);
        Assert.Equal(8, manager.GetComputedBlocks(c).NumComputedTokens);
    }

    [Fact]
    public void CacheSalt_SeparatesTenants()
    {
        KvCacheManager manager = NewManager();
        int[] prompt = TestRequests.RandomTokens(_random, 9);
        Admit(manager, TestRequests.Make("a", prompt, cacheSalt: "tenant-1"), out _);
        Assert.Equal(0, manager.GetComputedBlocks(TestRequests.Make("b", prompt)).NumComputedTokens);
        Assert.Equal(0, manager.GetComputedBlocks(TestRequests.Make("c", prompt, cacheSalt: "tenant-2")).NumComputedTokens);
        Assert.Equal(8, manager.GetComputedBlocks(TestRequests.Make("d", prompt, cacheSalt: "tenant-1")).NumComputedTokens);
    }

    [Fact]
    public void Free_AppendsBlocksInReverse_AndEvictionFollowsLruOrder()
    {
        KvCacheManager manager = NewManager();
        int[] promptA = TestRequests.RandomTokens(_random, 12);
        var a = TestRequests.Make("a", promptA);
        Assert.Equal([1, 2, 3], Admit(manager, a, out _));
        var b = TestRequests.Make("b", TestRequests.RandomTokens(_random, 8));
        Assert.Equal([4, 5], Admit(manager, b, out _));

        manager.Free(a);
        manager.Free(b);
        // Never-used blocks first, then a's blocks tail-first, then b's.
        Assert.Equal([6, 7, 8, 9, 10, 3, 2, 1, 5, 4], manager.BlockPool.FreeBlocksInEvictionOrder().Select(x => x.BlockId));
        Assert.Equal(5, manager.BlockPool.NumCachedBlocks);
        Assert.Equal(0f, manager.Usage);

        // A 24-token request takes 6 blocks: the 5 unused ones, then evicts a's last block.
        var c = TestRequests.Make("c", TestRequests.RandomTokens(_random, 24));
        Assert.Equal([6, 7, 8, 9, 10, 3], Admit(manager, c, out _));
        // Reusing block 3 dropped a's third hash; the block now caches c's sixth block.
        Assert.Null(manager.BlockPool.GetCachedBlock(a.BlockHashes[2]));
        Assert.Equal(c.BlockHashes[5], manager.BlockPool[3].Hash);
        // a's first two blocks survive: a repeat of a still hits 8 tokens, reviving blocks 1 and 2.
        var a2 = TestRequests.Make("a2", promptA);
        Assert.Equal(8, manager.GetComputedBlocks(a2).NumComputedTokens);
        Assert.Equal([2, 1, 5, 4], manager.BlockPool.FreeBlocksInEvictionOrder().Select(x => x.BlockId));
        Assert.Equal([5], Admit(manager, a2, out int hit));
        Assert.Equal(8, hit);
        Assert.Equal([1, 2, 5], manager.GetBlockIds("a2"));
        Assert.Equal([4], manager.BlockPool.FreeBlocksInEvictionOrder().Select(x => x.BlockId));
    }

    [Fact]
    public void AllocateSlots_ReturnsNullWhenFull_AndChangesNothing()
    {
        KvCacheManager manager = NewManager(numBlocks: 5);
        var a = TestRequests.Make("a", TestRequests.RandomTokens(_random, 12));
        Admit(manager, a, out _);
        var b = TestRequests.Make("b", TestRequests.RandomTokens(_random, 8));
        Assert.Null(manager.AllocateSlots(b, 8));
        Assert.Empty(manager.GetBlockIds("b"));
        Assert.Equal(1, manager.BlockPool.NumFreeBlocks);

        // Decode growth of a: token 13 needs a fourth block, token 17 a fifth that does not exist.
        Assert.Equal([4], manager.AllocateSlots(a, 1)!.Select(x => x.BlockId));
        a.NumComputedTokens = 16;
        Assert.Null(manager.AllocateSlots(a, 1));
    }

    [Fact]
    public void RevivingCachedFreeBlocks_CountsAgainstFreeSpace()
    {
        KvCacheManager manager = NewManager(numBlocks: 5);
        int[] prompt = TestRequests.RandomTokens(_random, 9);
        var a = TestRequests.Make("a", prompt);
        Admit(manager, a, out _);
        manager.Free(a);
        Assert.Equal(4, manager.BlockPool.NumFreeBlocks);

        // Hits on blocks 1-2 (free, cached) plus 3 new blocks = 5 > 4 free: no room.
        var b = TestRequests.Make("b", [.. prompt[..8], .. TestRequests.RandomTokens(_random, 12)]);
        (IReadOnlyList<KvCacheBlock> hits, int numHit) = manager.GetComputedBlocks(b);
        Assert.Equal(8, numHit);
        Assert.Null(manager.AllocateSlots(b, b.NumTokens - numHit, numHit, hits));
        Assert.Equal(4, manager.BlockPool.NumFreeBlocks);
        Assert.All(hits, h => Assert.Equal(0, h.RefCount));
    }

    [Fact]
    public void PrefixCachingDisabled_NeverHits()
    {
        KvCacheManager manager = NewManager(prefixCaching: false);
        int[] prompt = TestRequests.RandomTokens(_random, 9);
        Admit(manager, TestRequests.Make("a", prompt), out _);
        Assert.Equal(0, manager.BlockPool.NumCachedBlocks);
        Assert.Equal(0, manager.GetComputedBlocks(TestRequests.Make("b", prompt)).NumComputedTokens);
    }

    [Fact]
    public void PromptLogprobsRequests_SkipCacheReads()
    {
        KvCacheManager manager = NewManager();
        int[] prompt = TestRequests.RandomTokens(_random, 9);
        Admit(manager, TestRequests.Make("a", prompt), out _);
        var b = TestRequests.Make("b", prompt, samplingParams: new SamplingParams { PromptLogprobs = 1 });
        Assert.Equal(0, manager.GetComputedBlocks(b).NumComputedTokens);
    }

    [Fact]
    public void ResetPrefixCache_OnlyWhenNoBlockIsHeld()
    {
        KvCacheManager manager = NewManager();
        int[] prompt = TestRequests.RandomTokens(_random, 9);
        var a = TestRequests.Make("a", prompt);
        Admit(manager, a, out _);
        Assert.False(manager.ResetPrefixCache());
        manager.Free(a);
        Assert.True(manager.ResetPrefixCache());
        Assert.Equal(0, manager.BlockPool.NumCachedBlocks);
        Assert.Equal(0, manager.GetComputedBlocks(TestRequests.Make("b", prompt)).NumComputedTokens);
    }

    [Fact]
    public void DecodeTokens_CompleteBlocksThatBecomeCached()
    {
        KvCacheManager manager = NewManager();
        int[] prompt = TestRequests.RandomTokens(_random, 6);
        var a = TestRequests.Make("a", prompt);
        Admit(manager, a, out _);
        Assert.Equal(1, manager.BlockPool.NumCachedBlocks);
        a.AppendOutputTokenId(900);
        a.AppendOutputTokenId(901);
        // Slots for token 7 (position 6) and 8: the second block fills up and is cached.
        Assert.Empty(manager.AllocateSlots(a, 2)!);
        Assert.Equal(2, manager.BlockPool.NumCachedBlocks);
        var b = TestRequests.Make("b", [.. prompt, 900, 901, 5]);
        Assert.Equal(8, manager.GetComputedBlocks(b).NumComputedTokens);
    }
}
