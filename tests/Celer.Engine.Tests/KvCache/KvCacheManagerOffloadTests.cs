using Celer.Engine.KvCache;
using Celer.Engine.Scheduling;
using Celer.Engine.Tests.Support;
using Celer.Models.Backend;

namespace Celer.Engine.Tests.KvCache;

/// <summary>
/// The KV cache manager with a host tier: exact device blocks, host blocks and copies, in the manner of
/// <see cref="KvCacheManagerTests"/>. Block size 4, 11 device blocks (10 usable) and 8 host blocks throughout.
/// </summary>
public class KvCacheManagerOffloadTests
{
    private const int BlockSize = 4;
    private readonly Random _random = new(4321);

    private static KvCacheManager NewManager(int numHostBlocks = 8) => new(11, BlockSize, maxModelLen: 1024, enablePrefixCaching: true, numHostBlocks, "model");

    private static IReadOnlyList<int> Admit(KvCacheManager manager, Request request)
    {
        (IReadOnlyList<KvCacheBlock> hits, int numHitTokens) = manager.GetComputedBlocks(request);
        IReadOnlyList<KvCacheBlock> newBlocks = manager.AllocateSlots(request, request.NumTokens - numHitTokens, numHitTokens, hits)
            ?? throw new InvalidOperationException("no room");
        request.NumComputedTokens = request.NumTokens;
        return newBlocks.Select(b => b.BlockId).ToArray();
    }

    /// <summary>A 9-token request whose two full blocks (ids 1 and 2) are cached, then freed: the queue ends 3, 2, 1.</summary>
    private (int[] Prompt, Request Request) CachedThenFreed(KvCacheManager manager, string? cacheSalt = null)
    {
        int[] prompt = TestRequests.RandomTokens(_random, 9);
        var a = TestRequests.Make("a", prompt, cacheSalt: cacheSalt);
        Assert.Equal([1, 2, 3], Admit(manager, a));
        manager.Free(a);
        Assert.Same(KvTransfers.None, manager.TakeTransfers());
        return (prompt, a);
    }

    /// <summary>A 40-token request takes all ten free blocks, which evicts a's cached blocks 2 and 1, in that order.</summary>
    private void FillThePool(KvCacheManager manager, string id = "b")
    {
        var b = TestRequests.Make(id, TestRequests.RandomTokens(_random, 40));
        Assert.Equal([4, 5, 6, 7, 8, 9, 10, 3, 2, 1], Admit(manager, b));
        manager.Free(b);
    }

    [Fact]
    public void Eviction_StoresOnlyCachedBlocks_IntoTheHostTier_InEvictionOrder()
    {
        KvCacheManager manager = NewManager();
        (_, Request a) = CachedThenFreed(manager);

        FillThePool(manager);

        // Block 3 held a's partial block (no hash): nothing to keep. Block 2 held a's second block, block 1 its first.
        KvTransfers transfers = manager.TakeTransfers();
        Assert.Equal([new KvBlockCopy(2, 0), new KvBlockCopy(1, 1)], transfers.Stores);
        Assert.Empty(transfers.Loads);
        Assert.Equal([a.BlockHashes[1], a.BlockHashes[0]], manager.Host!.HashesInLruOrder());
        Assert.Equal(new KvOffloadStats(0, 0, 0, 0, StoredBlocks: 2, 0, 0), manager.TakeOffloadStats());
    }

    [Fact]
    public void HostHits_AreLoadedIntoNewBlocks_AfterThisStepsStores_AndCachedOnlyOnceLoaded()
    {
        KvCacheManager manager = NewManager();
        (int[] prompt, Request a) = CachedThenFreed(manager);
        FillThePool(manager);
        manager.TakeTransfers();
        manager.TakeOffloadStats();

        var c = TestRequests.Make("c", [.. prompt, 7, 8, 9]);
        (IReadOnlyList<KvCacheBlock> deviceHits, int deviceTokens) = manager.GetComputedBlocks(c);
        Assert.Equal(0, deviceTokens);
        Assert.Equal(2, manager.FindHostHits(c, deviceHits.Count));
        KvLoad load = manager.AllocateForLoad(c, deviceHits, 2)!;

        // b's blocks went back reversed (1, 2, … first): taking 1 and 2 evicts b's last two blocks into free host blocks
        // 2 and 3, and a's blocks come back into 1 and 2 from host blocks 1 and 0. The stores come first in the step.
        KvTransfers transfers = manager.TakeTransfers();
        Assert.Equal([new KvBlockCopy(1, 2), new KvBlockCopy(2, 3)], transfers.Stores);
        Assert.Equal([load], transfers.Loads);
        Assert.Equal([new KvBlockCopy(1, 1), new KvBlockCopy(2, 0)], load.Blocks);
        Assert.Equal([1, 2], manager.GetBlockIds("c"));
        Assert.Equal(6, manager.Host!.NumAvailableBlocks);   // the two being read are pinned
        Assert.True(manager.HasPendingLoads);

        // Nothing may hit the blocks before they hold a's KV.
        Assert.Null(manager.BlockPool.GetCachedBlock(a.BlockHashes[0]));
        Assert.Same(c, manager.FinishLoad(load.LoadId));
        Assert.Equal(1, manager.BlockPool.GetCachedBlock(a.BlockHashes[0])!.BlockId);
        Assert.Equal(2, manager.BlockPool.GetCachedBlock(a.BlockHashes[1])!.BlockId);
        Assert.Equal(8, manager.Host.NumAvailableBlocks);
        Assert.False(manager.HasPendingLoads);
        Assert.Equal(new KvOffloadStats(Queries: 12, Hits: 8, BlockLookups: 2, BlockHits: 2, StoredBlocks: 2, LoadedBlocks: 2, Evictions: 0), manager.TakeOffloadStats());

        // The loaded prefix counts as computed: only the rest gets slots.
        c.NumComputedTokens = 8;
        Assert.Equal([3], manager.AllocateSlots(c, 4)!.Select(b => b.BlockId));
    }

    [Fact]
    public void AHostLookup_StopsAtTheFirstMiss_AndStaysUnderTheLastTokenCap()
    {
        KvCacheManager manager = NewManager();
        (int[] prompt, _) = CachedThenFreed(manager);
        FillThePool(manager);

        // Exactly a's 8 cached tokens: only the first block may be a hit, the last token being recomputed.
        var exact = TestRequests.Make("exact", prompt[..8]);
        Assert.Equal(1, manager.FindHostHits(exact, manager.GetComputedBlocks(exact).Blocks.Count));
        // Another second block: the chain breaks there.
        var diverging = TestRequests.Make("diverging", [.. prompt[..4], 1, 2, 3, 4, 5]);
        Assert.Equal(1, manager.FindHostHits(diverging, manager.GetComputedBlocks(diverging).Blocks.Count));
        Assert.Equal(new KvOffloadStats(Queries: 17, Hits: 8, BlockLookups: 3, BlockHits: 2, StoredBlocks: 2, 0, 0), manager.TakeOffloadStats());
    }

    [Fact]
    public void SaltedBlocks_AreFoundInTheHostTier_OnlyUnderTheirOwnSalt()
    {
        KvCacheManager manager = NewManager();
        (int[] prompt, _) = CachedThenFreed(manager, cacheSalt: "tenant-1");
        FillThePool(manager);

        Request Probe(string id, string? salt)
        {
            var request = TestRequests.Make(id, [.. prompt, 1, 2, 3], cacheSalt: salt);
            manager.GetComputedBlocks(request);
            return request;
        }

        Assert.Equal(0, manager.FindHostHits(Probe("unsalted", null), 0));
        Assert.Equal(0, manager.FindHostHits(Probe("other", "tenant-2"), 0));
        Assert.Equal(2, manager.FindHostHits(Probe("same", "tenant-1"), 0));
    }

    [Fact]
    public void ARequestFreedWhileLoading_KeepsItsBlocksUntilTheLoadIsDone()
    {
        KvCacheManager manager = NewManager();
        (int[] prompt, _) = CachedThenFreed(manager);
        FillThePool(manager);
        var c = TestRequests.Make("c", [.. prompt, 7, 8, 9]);
        manager.GetComputedBlocks(c);
        KvLoad load = manager.AllocateForLoad(c, [], manager.FindHostHits(c, 0))!;
        Assert.Equal(8, manager.BlockPool.NumFreeBlocks);

        manager.Free(c);

        // The copies may still be writing blocks 1 and 2: they are not handed out yet.
        Assert.Equal(8, manager.BlockPool.NumFreeBlocks);
        Assert.Null(manager.FinishLoad(load.LoadId));
        Assert.Equal(10, manager.BlockPool.NumFreeBlocks);
        Assert.Equal([2, 1], manager.BlockPool.FreeBlocksInEvictionOrder().TakeLast(2).Select(b => b.BlockId));
        Assert.Null(manager.BlockPool.GetCachedBlock(c.BlockHashes[0]));   // never cached: it was abandoned
        Assert.Equal(8, manager.Host!.NumAvailableBlocks);
    }

    [Fact]
    public void SwapOut_StoresTheComputedBlocks_Pinned_AndSwapInLoadsWhatTheDeviceLost()
    {
        KvCacheManager manager = NewManager();
        var r = TestRequests.Make("r", TestRequests.RandomTokens(_random, 11));
        Assert.Equal([1, 2, 3], Admit(manager, r));

        Assert.True(manager.SwapOut(r, 10));
        manager.Free(r);
        Assert.Equal([new KvBlockCopy(1, 0), new KvBlockCopy(2, 1), new KvBlockCopy(3, 2)], manager.TakeTransfers().Stores);
        Assert.Equal(10, manager.NumSwappedTokens(r));
        Assert.Equal(5, manager.Host!.NumAvailableBlocks);

        // Another request takes every block: r's two cached blocks are evicted into the host tier as well.
        FillThePool(manager);
        Assert.Equal([new KvBlockCopy(2, 3), new KvBlockCopy(1, 4)], manager.TakeTransfers().Stores);

        (IReadOnlyList<KvCacheBlock> hits, int hitTokens) = manager.GetComputedBlocks(r);
        Assert.Equal(0, hitTokens);
        KvLoad load = manager.AllocateForSwapIn(r, hits)!;
        // Three blocks for ten tokens: the partial third comes back too, from the swapped copies (host blocks 0..2).
        Assert.Equal([new KvBlockCopy(1, 0), new KvBlockCopy(2, 1), new KvBlockCopy(3, 2)], load.Blocks);
        Assert.Equal(0, manager.NumSwappedTokens(r));
        Assert.Same(r, manager.FinishLoad(load.LoadId));
        Assert.Equal(8, manager.Host.NumAvailableBlocks);
        Assert.Equal(5, manager.Host.NumUsedBlocks);   // the anonymous copies are free again; b's and r's hashed ones stay
    }

    [Fact]
    public void SwapOut_FailsWithoutRoom_AndChangesNothing()
    {
        KvCacheManager manager = NewManager(numHostBlocks: 2);
        var r = TestRequests.Make("r", TestRequests.RandomTokens(_random, 11));
        Admit(manager, r);

        Assert.False(manager.SwapOut(r, 10));

        Assert.Same(KvTransfers.None, manager.TakeTransfers());
        Assert.Equal(2, manager.Host!.NumAvailableBlocks);
        Assert.Equal(0, manager.NumSwappedTokens(r));
    }

    [Fact]
    public void ADeviceHitOnASwappedPrefix_LeavesOnlyTheRestToLoad()
    {
        KvCacheManager manager = NewManager();
        var r = TestRequests.Make("r", TestRequests.RandomTokens(_random, 11));
        Admit(manager, r);
        manager.SwapOut(r, 10);
        manager.Free(r);
        manager.TakeTransfers();

        // Blocks 1 and 2 (r's full blocks) are still cached on the device: only the partial third comes from the host.
        (IReadOnlyList<KvCacheBlock> hits, int hitTokens) = manager.GetComputedBlocks(r);
        Assert.Equal(8, hitTokens);
        KvLoad load = manager.AllocateForSwapIn(r, hits)!;
        Assert.Equal([new KvBlockCopy(4, 2)], load.Blocks);
        Assert.Equal([1, 2, 4], manager.GetBlockIds("r"));
        Assert.Equal(7, manager.Host!.NumAvailableBlocks);   // only host block 2 is still read
    }
}
