using Celer.Engine.Scheduling;

namespace Celer.Engine.KvCache;

/// <summary>
/// The scheduler's only view of the KV cache (vLLM's <c>KVCacheManager</c> for full attention):
/// it finds prefix-cache hits, allocates slots for the tokens scheduled in a step (answering
/// null when there is no room, which tells the scheduler to preempt), caches full blocks and
/// frees a request's blocks.
/// </summary>
public sealed class KvCacheManager
{
    private readonly Dictionary<string, List<KvCacheBlock>> _requestBlocks = [];
    // Blocks of each request already registered in the prefix cache (a prefix of its block list).
    private readonly Dictionary<string, int> _numCachedBlocks = [];
    private long _statRequests;
    private long _statQueries;
    private long _statHits;

    public KvCacheManager(int numBlocks, int blockSize, int maxModelLen, bool enablePrefixCaching)
    {
        BlockPool = new BlockPool(numBlocks, enablePrefixCaching);
        Hasher = new BlockHasher(blockSize);
        BlockSize = blockSize;
        MaxModelLen = maxModelLen;
    }

    public BlockPool BlockPool { get; }
    public BlockHasher Hasher { get; }
    public int BlockSize { get; }
    public int MaxModelLen { get; }
    public bool EnablePrefixCaching => BlockPool.EnablePrefixCaching;
    public float Usage => BlockPool.Usage;

    /// <summary>
    /// The longest cached prefix of the request in full blocks, and how many tokens it covers.
    /// Capped at NumTokens − 1: the last token must be recomputed to get logits to sample from.
    /// Takes no references: <see cref="AllocateSlots"/> does, if the request is admitted.
    /// </summary>
    public (IReadOnlyList<KvCacheBlock> Blocks, int NumComputedTokens) GetComputedBlocks(Request request)
    {
        if (!EnablePrefixCaching || request.SkipPrefixCacheReads)
        {
            return ([], 0);
        }
        Hasher.ExtendBlockHashes(request);
        int maxHitBlocks = (request.NumTokens - 1) / BlockSize;
        var hits = new List<KvCacheBlock>();
        foreach (BlockHash hash in request.BlockHashes)
        {
            if (hits.Count == maxHitBlocks || BlockPool.GetCachedBlock(hash) is not { } block)
            {
                // Chained hashes: after the first miss no later block can be a hit of this prefix.
                break;
            }
            hits.Add(block);
        }
        int numComputedTokens = hits.Count * BlockSize;
        _statRequests++;
        _statQueries += request.NumTokens;
        _statHits += numComputedTokens;
        return (hits, numComputedTokens);
    }

    /// <summary>
    /// Makes room for <paramref name="numNewTokens"/> more tokens of the request on top of its
    /// computed tokens and the prefix hit just found. Returns the newly allocated blocks, or null
    /// when the pool can't hold them (nothing is changed then).
    /// </summary>
    public IReadOnlyList<KvCacheBlock>? AllocateSlots(
        Request request,
        int numNewTokens,
        int numNewComputedTokens = 0,
        IReadOnlyList<KvCacheBlock>? newComputedBlocks = null,
        int numLookaheadTokens = 0)
    {
        if (numNewTokens <= 0)
        {
            throw new ArgumentOutOfRangeException(nameof(numNewTokens), numNewTokens, "Must allocate slots for at least one token.");
        }
        newComputedBlocks ??= [];
        List<KvCacheBlock> blocks = _requestBlocks.GetValueOrDefault(request.RequestId) ?? [];
        int numComputedTokens = request.NumComputedTokens + numNewComputedTokens;
        int numTokensNeedSlot = Math.Min(numComputedTokens + numNewTokens + numLookaheadTokens, MaxModelLen);
        int numRequiredBlocks = CeilDiv(numTokensNeedSlot, BlockSize);
        int numBlocksToAllocate = Math.Max(0, numRequiredBlocks - blocks.Count - newComputedBlocks.Count);
        // Cache hits that nobody holds are still in the free queue: reviving them uses up free blocks too.
        int numEvictableHits = newComputedBlocks.Count(b => b.RefCount == 0 && !b.IsNull);
        if (numBlocksToAllocate + numEvictableHits > BlockPool.NumFreeBlocks)
        {
            return null;
        }

        if (newComputedBlocks.Count > 0)
        {
            BlockPool.Touch(newComputedBlocks);
            blocks.AddRange(newComputedBlocks);
        }
        List<KvCacheBlock> newBlocks = BlockPool.GetNewBlocks(numBlocksToAllocate);
        blocks.AddRange(newBlocks);
        _requestBlocks[request.RequestId] = blocks;

        // Blocks filled by this step's tokens are registered now, before the forward pass runs:
        // a request scheduled later in the same step may hit them, which is safe because the runner
        // writes each layer's KV for the whole batch before that layer's attention reads it.
        CacheBlocks(request, Math.Min(numComputedTokens + numNewTokens, request.NumTokens));
        return newBlocks;
    }

    /// <summary>Registers the request's full blocks up to <paramref name="numComputedTokens"/> in the prefix cache.</summary>
    public void CacheBlocks(Request request, int numComputedTokens)
    {
        if (!EnablePrefixCaching || !_requestBlocks.TryGetValue(request.RequestId, out List<KvCacheBlock>? blocks))
        {
            return;
        }
        Hasher.ExtendBlockHashes(request);
        int numFullBlocks = Math.Min(numComputedTokens / BlockSize, request.BlockHashes.Count);
        int numCached = _numCachedBlocks.GetValueOrDefault(request.RequestId);
        if (numFullBlocks <= numCached)
        {
            return;
        }
        BlockPool.CacheFullBlocks(blocks, request.BlockHashes, numCached, numFullBlocks);
        _numCachedBlocks[request.RequestId] = numFullBlocks;
    }

    /// <summary>
    /// Releases the request's blocks. Freed in reverse order so that, among equally old blocks,
    /// the tail of a sequence (least likely to be shared as a prefix) is evicted first.
    /// </summary>
    public void Free(Request request)
    {
        if (_requestBlocks.Remove(request.RequestId, out List<KvCacheBlock>? blocks))
        {
            blocks.Reverse();
            BlockPool.FreeBlocks(blocks);
        }
        _numCachedBlocks.Remove(request.RequestId);
    }

    public IReadOnlyList<int> GetBlockIds(string requestId) =>
        _requestBlocks.TryGetValue(requestId, out List<KvCacheBlock>? blocks) ? blocks.Select(b => b.BlockId).ToArray() : [];

    /// <summary>Prefix-cache counters since the previous call.</summary>
    public PrefixCacheStats TakePrefixCacheStats()
    {
        var stats = new PrefixCacheStats(_statRequests, _statQueries, _statHits);
        _statRequests = _statQueries = _statHits = 0;
        return stats;
    }

    public bool ResetPrefixCache() => BlockPool.ResetPrefixCache();

    private static int CeilDiv(int a, int b) => (a + b - 1) / b;
}
