namespace Celer.Engine.KvCache;

/// <summary>
/// All KV blocks, preallocated (vLLM's <c>BlockPool</c>). Block 0 is the null block and never
/// handed out. Freed blocks keep their hash and stay findable in the prefix cache until
/// allocation evicts them from the head of the free queue.
/// </summary>
public sealed class BlockPool
{
    private readonly KvCacheBlock[] _blocks;
    private readonly FreeBlockQueue _freeQueue;
    // One block per hash: when two requests compute the same block in the same step, the first
    // to finish it is cached and the duplicate stays a plain block, freed like any other.
    private readonly Dictionary<BlockHash, KvCacheBlock> _cachedBlocks = [];
    private readonly Action<KvCacheBlock, BlockHash>? _onEvict;

    /// <param name="onEvict">
    /// Called when allocation is about to reuse a cached block, with its hash, before the block changes hands: the host
    /// tier copies it out then.
    /// </param>
    public BlockPool(int numBlocks, bool enablePrefixCaching, Action<KvCacheBlock, BlockHash>? onEvict = null)
    {
        _onEvict = onEvict;
        if (numBlocks < 2)
        {
            throw new ArgumentOutOfRangeException(nameof(numBlocks), numBlocks, "The KV cache needs at least 2 blocks (block 0 is the null block).");
        }
        EnablePrefixCaching = enablePrefixCaching;
        _blocks = new KvCacheBlock[numBlocks];
        _blocks[0] = new KvCacheBlock(0) { IsNull = true };
        for (int i = 1; i < numBlocks; i++)
        {
            _blocks[i] = new KvCacheBlock(i);
        }
        _freeQueue = new FreeBlockQueue(_blocks.Skip(1));
    }

    public int NumBlocks => _blocks.Length;
    public bool EnablePrefixCaching { get; }
    public KvCacheBlock NullBlock => _blocks[0];
    public int NumFreeBlocks => _freeQueue.Count;
    public int NumCachedBlocks => _cachedBlocks.Count;

    /// <summary>Fraction of usable blocks held by requests (free-but-cached blocks count as free).</summary>
    public float Usage => 1f - ((float)NumFreeBlocks / (NumBlocks - 1));

    public KvCacheBlock this[int blockId] => _blocks[blockId];

    /// <summary>Free blocks in eviction order, head first.</summary>
    public IReadOnlyList<KvCacheBlock> FreeBlocksInEvictionOrder() => _freeQueue.ToList();

    public KvCacheBlock? GetCachedBlock(BlockHash hash) => _cachedBlocks.GetValueOrDefault(hash);

    /// <summary>
    /// Takes <paramref name="count"/> blocks off the head of the free queue, evicting any cached
    /// contents they still hold. The caller has checked there are enough.
    /// </summary>
    public List<KvCacheBlock> GetNewBlocks(int count)
    {
        if (count > NumFreeBlocks)
        {
            throw new InvalidOperationException($"Cannot get {count} free blocks: only {NumFreeBlocks} are free.");
        }
        var result = new List<KvCacheBlock>(count);
        for (int i = 0; i < count; i++)
        {
            KvCacheBlock block = _freeQueue.PopLeft();
            MaybeEvictCachedBlock(block);
            block.RefCount = 1;
            result.Add(block);
        }
        return result;
    }

    /// <summary>
    /// Takes a reference on prefix-cache hits. A hit on a block with no holders revives it out of
    /// the free queue so it can no longer be evicted.
    /// </summary>
    public void Touch(IEnumerable<KvCacheBlock> blocks)
    {
        foreach (KvCacheBlock block in blocks)
        {
            if (block.RefCount == 0 && !block.IsNull)
            {
                _freeQueue.Remove(block);
            }
            block.RefCount++;
        }
    }

    /// <summary>
    /// Drops one reference from each block, in the given order; blocks that reach zero go to the
    /// tail of the free queue in that order, so earlier ones are evicted first.
    /// </summary>
    public void FreeBlocks(IEnumerable<KvCacheBlock> orderedBlocks)
    {
        foreach (KvCacheBlock block in orderedBlocks)
        {
            if (block.IsNull)
            {
                // The null block pads tables and is never in the queue.
                continue;
            }
            if (block.RefCount <= 0)
            {
                throw new InvalidOperationException($"Block {block.BlockId} freed more times than it was allocated.");
            }
            block.RefCount--;
            if (block.RefCount == 0)
            {
                _freeQueue.Append(block);
            }
        }
    }

    /// <summary>
    /// Registers blocks [numCachedBlocks, numFullBlocks) of a request as cached full blocks.
    /// </summary>
    public void CacheFullBlocks(IReadOnlyList<KvCacheBlock> blocks, IReadOnlyList<BlockHash> blockHashes, int numCachedBlocks, int numFullBlocks)
    {
        if (!EnablePrefixCaching)
        {
            return;
        }
        for (int i = numCachedBlocks; i < numFullBlocks; i++)
        {
            KvCacheBlock block = blocks[i];
            if (block.Hash is not null)
            {
                // Already cached: it came from a prefix hit.
                continue;
            }
            BlockHash hash = blockHashes[i];
            if (_cachedBlocks.TryAdd(hash, block))
            {
                block.Hash = hash;
            }
        }
    }

    /// <summary>
    /// Forgets every cached hash. Only possible when no request holds a block (vLLM's rule),
    /// because a running request's blocks would otherwise become uncached mid-flight.
    /// </summary>
    public bool ResetPrefixCache()
    {
        if (NumFreeBlocks != NumBlocks - 1)
        {
            return false;
        }
        foreach (KvCacheBlock block in _cachedBlocks.Values)
        {
            block.Hash = null;
        }
        _cachedBlocks.Clear();
        return true;
    }

    private void MaybeEvictCachedBlock(KvCacheBlock block)
    {
        if (block.Hash is { } hash)
        {
            _cachedBlocks.Remove(hash);
            block.Hash = null;
            _onEvict?.Invoke(block, hash);
        }
    }
}
