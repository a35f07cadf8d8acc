namespace Celer.Engine.KvCache;

/// <summary>
/// Free blocks in eviction order (vLLM's <c>FreeKVCacheBlockQueue</c>): a doubly linked list
/// through the blocks themselves, with sentinel head and tail. Allocation pops the head (the
/// least recently freed block); freed blocks are appended at the tail; a prefix-cache hit on a
/// free block removes it from the middle in O(1).
/// </summary>
public sealed class FreeBlockQueue
{
    private readonly KvCacheBlock _head = new(-1);
    private readonly KvCacheBlock _tail = new(-1);

    public FreeBlockQueue(IEnumerable<KvCacheBlock> blocks)
    {
        _head.NextFree = _tail;
        _tail.PrevFree = _head;
        foreach (KvCacheBlock block in blocks)
        {
            Append(block);
        }
    }

    public int Count { get; private set; }

    /// <summary>Removes and returns the least recently freed block.</summary>
    public KvCacheBlock PopLeft()
    {
        KvCacheBlock first = _head.NextFree!;
        if (first == _tail)
        {
            throw new InvalidOperationException("No free blocks available.");
        }
        Unlink(first);
        return first;
    }

    /// <summary>Removes a block from anywhere in the queue (a cache hit revives a freed block).</summary>
    public void Remove(KvCacheBlock block)
    {
        if (block.PrevFree is null || block.NextFree is null)
        {
            throw new InvalidOperationException($"Block {block.BlockId} is not in the free queue.");
        }
        Unlink(block);
    }

    public void Append(KvCacheBlock block)
    {
        if (block.PrevFree is not null || block.NextFree is not null)
        {
            throw new InvalidOperationException($"Block {block.BlockId} is already in the free queue.");
        }
        KvCacheBlock last = _tail.PrevFree!;
        last.NextFree = block;
        block.PrevFree = last;
        block.NextFree = _tail;
        _tail.PrevFree = block;
        Count++;
    }

    /// <summary>The free blocks from head (next to evict) to tail; for tests and diagnostics.</summary>
    public List<KvCacheBlock> ToList()
    {
        var blocks = new List<KvCacheBlock>(Count);
        for (KvCacheBlock node = _head.NextFree!; node != _tail; node = node.NextFree!)
        {
            blocks.Add(node);
        }
        return blocks;
    }

    private void Unlink(KvCacheBlock block)
    {
        block.PrevFree!.NextFree = block.NextFree;
        block.NextFree!.PrevFree = block.PrevFree;
        block.PrevFree = null;
        block.NextFree = null;
        Count--;
    }
}
