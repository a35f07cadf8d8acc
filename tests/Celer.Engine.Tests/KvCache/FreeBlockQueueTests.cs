using Celer.Engine.KvCache;

namespace Celer.Engine.Tests.KvCache;

public class FreeBlockQueueTests
{
    [Fact]
    public void PopLeft_RemoveFromMiddle_Append_KeepOrder()
    {
        KvCacheBlock[] blocks = Enumerable.Range(1, 5).Select(i => new KvCacheBlock(i)).ToArray();
        var queue = new FreeBlockQueue(blocks);

        Assert.Equal(1, queue.PopLeft().BlockId);
        queue.Remove(blocks[2]);
        queue.Append(blocks[0]);
        Assert.Equal([2, 4, 5, 1], queue.ToList().Select(b => b.BlockId));
        Assert.Equal(4, queue.Count);

        queue.Remove(blocks[4]);
        queue.Remove(blocks[0]);
        Assert.Equal([2, 4], queue.ToList().Select(b => b.BlockId));
        Assert.Throws<InvalidOperationException>(() => queue.Remove(blocks[0]));
        Assert.Throws<InvalidOperationException>(() => queue.Append(blocks[1]));
    }

    [Fact]
    public void PopLeft_OnEmptyQueue_Throws()
    {
        var queue = new FreeBlockQueue([new KvCacheBlock(1)]);
        queue.PopLeft();
        Assert.Equal(0, queue.Count);
        Assert.Throws<InvalidOperationException>(() => queue.PopLeft());
    }
}
