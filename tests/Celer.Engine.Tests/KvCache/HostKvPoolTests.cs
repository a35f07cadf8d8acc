using Celer.Engine.KvCache;

namespace Celer.Engine.Tests.KvCache;

/// <summary>The host tier's bookkeeping: exact blocks handed out and exact eviction order, as the device pool's tests.</summary>
public class HostKvPoolTests
{
    private static BlockHash H(int i) => new(new UInt128(0, (ulong)i));

    [Fact]
    public void Store_FillsFreeBlocksInOrder_ThenEvictsTheLeastRecentlyUsed()
    {
        var pool = new HostKvPool(3);
        Assert.Equal(0, pool.Store(H(1)));
        Assert.Equal(1, pool.Store(H(2)));
        Assert.Equal(2, pool.Store(H(3)));
        Assert.Equal(1f, pool.Usage);

        // A lookup makes H(1) the most recently used: H(2) is the oldest now, and its block goes to H(4).
        Assert.Equal(0, pool.Lookup(H(1)));
        Assert.Equal(1, pool.Store(H(4)));
        Assert.False(pool.Contains(H(2)));
        Assert.Null(pool.Lookup(H(2)));
        Assert.Equal([H(3), H(1), H(4)], pool.HashesInLruOrder());
        Assert.Equal(1, pool.NumEvictions);

        Assert.Equal(2, pool.Store(H(5)));   // H(3) is evicted next
        Assert.Equal([H(1), H(4), H(5)], pool.HashesInLruOrder());
        Assert.Equal(2, pool.NumEvictions);
    }

    [Fact]
    public void PinnedBlocks_AreNeverEvicted_AndAStoreFindsNoRoomWhenAllArePinned()
    {
        var pool = new HostKvPool(2);
        int a = pool.Store(H(1))!.Value, b = pool.Store(H(2))!.Value;
        pool.Pin(a);
        Assert.Equal(1, pool.NumAvailableBlocks);

        // H(1) is the least recently used but pinned: H(2)'s block is taken.
        Assert.Equal(b, pool.Store(H(3)));
        Assert.True(pool.Contains(H(1)));
        pool.Pin(b);
        Assert.Equal(0, pool.NumAvailableBlocks);
        Assert.Null(pool.Store(H(4)));
        Assert.Null(pool.AllocateAnonymous());

        pool.Unpin(a);
        Assert.Equal(a, pool.Store(H(4)));
        Assert.Equal([H(3), H(4)], pool.HashesInLruOrder());
        Assert.Throws<InvalidOperationException>(() => pool.Unpin(a));
    }

    [Fact]
    public void AnonymousBlocks_ArePinnedUntilReleased_AndNeverFound()
    {
        var pool = new HostKvPool(3);
        int hashed = pool.Store(H(1))!.Value;
        int swap0 = pool.AllocateAnonymous()!.Value, swap1 = pool.AllocateAnonymous()!.Value;
        Assert.Equal([0, 1, 2], new[] { hashed, swap0, swap1 });
        Assert.Equal(1, pool.NumAvailableBlocks);
        Assert.Equal([H(1)], pool.HashesInLruOrder());

        // The only evictable block is the hashed one.
        Assert.Equal(hashed, pool.Store(H(2)));
        pool.Unpin(swap1);
        Assert.Equal(2, pool.NumUsedBlocks);
        Assert.Equal(swap1, pool.Store(H(3)));
    }

    [Fact]
    public void Clear_ForgetsUnpinnedBlocksOnly()
    {
        var pool = new HostKvPool(4);
        int keep = pool.Store(H(1))!.Value;
        pool.Store(H(2));
        pool.Pin(keep);
        int swapped = pool.AllocateAnonymous()!.Value;

        pool.Clear();

        Assert.Equal([H(1)], pool.HashesInLruOrder());
        Assert.Equal(2, pool.NumUsedBlocks);
        pool.Unpin(swapped);
        Assert.Equal(1, pool.NumUsedBlocks);
    }
}
