using Celer.Engine.Scheduling;
using Celer.Models.Backend;

namespace Celer.Engine.KvCache;

/// <summary>
/// The scheduler's only view of the KV cache (vLLM's <c>KVCacheManager</c> for full attention):
/// it finds prefix-cache hits, allocates slots for the tokens scheduled in a step (answering
/// null when there is no room, which tells the scheduler to preempt), caches full blocks and
/// frees a request's blocks.
/// <para>
/// With a host tier (<see cref="Host"/>, <c>--kv-offload-size</c>) a cached block that allocation evicts is first
/// stored there, keyed by its hash; a prefix lookup that misses on the device continues there, and the blocks it finds are
/// loaded into new device blocks (<see cref="AllocateForLoad"/>), which join the prefix cache once the runner reports the
/// load done (<see cref="FinishLoad"/>). A request preempted by swapping stores its computed blocks there too, pinned until
/// it resumes. The copies a step needs are taken by the scheduler with <see cref="TakeTransfers"/>.
/// </para>
/// </summary>
public sealed class KvCacheManager
{
    private readonly Dictionary<string, List<KvCacheBlock>> _requestBlocks = [];
    // Blocks of each request already registered in the prefix cache (a prefix of its block list).
    private readonly Dictionary<string, int> _numCachedBlocks = [];
    private long _statRequests;
    private long _statQueries;
    private long _statHits;

    private readonly Dictionary<long, PendingLoad> _pendingLoads = [];
    private readonly Dictionary<string, long> _loadOfRequest = [];
    private readonly Dictionary<string, SwappedRequest> _swapped = [];
    private List<KvBlockCopy>? _stores;
    private List<KvLoad>? _loads;
    private long _lastLoadId;
    private KvOffloadStats _offloadStats;
    private long _evictionsReported;

    /// <param name="numHostBlocks">Blocks of the host tier; 0: none.</param>
    /// <param name="modelIdentity">What the KV was computed by, hashed into every block (<see cref="BlockHasher"/>).</param>
    public KvCacheManager(int numBlocks, int blockSize, int maxModelLen, bool enablePrefixCaching, int numHostBlocks = 0, string modelIdentity = "")
    {
        Host = numHostBlocks > 0 ? new HostKvPool(numHostBlocks) : null;
        BlockPool = new BlockPool(numBlocks, enablePrefixCaching, Host is null ? null : Offload);
        Hasher = new BlockHasher(blockSize, modelIdentity);
        BlockSize = blockSize;
        MaxModelLen = maxModelLen;
    }

    public BlockPool BlockPool { get; }
    public BlockHasher Hasher { get; }
    public int BlockSize { get; }
    public int MaxModelLen { get; }
    public bool EnablePrefixCaching => BlockPool.EnablePrefixCaching;
    public float Usage => BlockPool.Usage;

    /// <summary>The host tier's bookkeeping, or null without one.</summary>
    public HostKvPool? Host { get; }

    /// <summary>Loads queued and not reported done yet (an aborted request's included: its blocks wait for them).</summary>
    public bool HasPendingLoads => _pendingLoads.Count > 0;

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
    /// The host tier's part of a prefix lookup: how many blocks after the request's <paramref name="numDeviceHitBlocks"/>
    /// device hits the host tier holds in a row, under the same cap as the device's hits. Call after
    /// <see cref="GetComputedBlocks"/>.
    /// </summary>
    public int FindHostHits(Request request, int numDeviceHitBlocks)
    {
        int maxHitBlocks = (request.NumTokens - 1) / BlockSize;
        if (Host is null || !EnablePrefixCaching || request.SkipPrefixCacheReads || numDeviceHitBlocks >= maxHitBlocks)
        {
            return 0;
        }

        int hits = 0;
        while (numDeviceHitBlocks + hits < maxHitBlocks && Host.Contains(request.BlockHashes[numDeviceHitBlocks + hits]))
        {
            hits++;
        }

        // Every hash up to the first miss was looked up, the miss too unless the cap came first.
        int lookups = numDeviceHitBlocks + hits < maxHitBlocks ? hits + 1 : hits;
        _offloadStats = _offloadStats with
        {
            Queries = _offloadStats.Queries + request.NumTokens,
            Hits = _offloadStats.Hits + (hits * BlockSize),
            BlockLookups = _offloadStats.BlockLookups + lookups,
            BlockHits = _offloadStats.BlockHits + hits,
        };
        return hits;
    }

    /// <summary>
    /// Starts loading a waiting request's host hits: takes its device hits, gives each host hit a new device block and
    /// queues the copy. The loaded blocks join the prefix cache when the load is done (<see cref="FinishLoad"/>), so no
    /// request reads them before. Returns null when the device pool has no room for them (nothing changes then).
    /// </summary>
    public KvLoad? AllocateForLoad(Request request, IReadOnlyList<KvCacheBlock> deviceHits, int numHostHitBlocks)
    {
        HostKvPool host = Host ?? throw new InvalidOperationException("There is no host KV tier.");
        if (!HasRoomFor(numHostHitBlocks, deviceHits))
        {
            return null;
        }

        // Pinned before the device blocks are taken: their evictions are stored into the host tier, never over these.
        var hostBlocks = new int[numHostHitBlocks];
        for (int i = 0; i < hostBlocks.Length; i++)
        {
            hostBlocks[i] = host.Lookup(request.BlockHashes[deviceHits.Count + i]) ?? throw new InvalidOperationException("A host hit vanished.");
            host.Pin(hostBlocks[i]);
        }

        int numTokens = (deviceHits.Count + numHostHitBlocks) * BlockSize;
        return StartLoad(request, deviceHits, hostBlocks, numTokens);
    }

    /// <summary>Tokens of a request preempted by swapping that wait in the host tier; 0 for any other.</summary>
    public int NumSwappedTokens(Request request) => _swapped.TryGetValue(request.RequestId, out SwappedRequest? swapped) ? swapped.NumTokens : 0;

    /// <summary>
    /// Resumes a swapped-out request: takes its device hits (fewer tokens than it swapped) and loads the rest of its swapped
    /// blocks into new device blocks. Null when the device pool has no room (nothing changes then).
    /// </summary>
    public KvLoad? AllocateForSwapIn(Request request, IReadOnlyList<KvCacheBlock> deviceHits)
    {
        SwappedRequest swapped = _swapped[request.RequestId];
        int numBlocks = CeilDiv(swapped.NumTokens, BlockSize);
        if (deviceHits.Count >= numBlocks)
        {
            throw new InvalidOperationException("The device hits cover the swapped tokens: there is nothing to load.");
        }

        if (!HasRoomFor(numBlocks - deviceHits.Count, deviceHits))
        {
            return null;
        }

        _swapped.Remove(request.RequestId);
        // The host copies of blocks the device still has are not needed.
        foreach (int block in swapped.HostBlocks.AsSpan(0, deviceHits.Count))
        {
            Host!.Unpin(block);
        }

        return StartLoad(request, deviceHits, swapped.HostBlocks[deviceHits.Count..], swapped.NumTokens);
    }

    /// <summary>
    /// Preemption by swapping: queues stores of the blocks that hold the request's first <paramref name="numTokens"/>
    /// tokens into host blocks pinned for its resumption. False (and nothing changes) when the host tier cannot hold them
    /// all: the request is then recomputed. The caller frees the device blocks next.
    /// </summary>
    public bool SwapOut(Request request, int numTokens)
    {
        int numBlocks = CeilDiv(numTokens, BlockSize);
        if (Host is null || numBlocks == 0 || Host.NumAvailableBlocks < numBlocks || !_requestBlocks.TryGetValue(request.RequestId, out List<KvCacheBlock>? blocks))
        {
            return false;
        }

        var hostBlocks = new int[numBlocks];
        _stores ??= [];
        for (int i = 0; i < numBlocks; i++)
        {
            hostBlocks[i] = Host.AllocateAnonymous() ?? throw new InvalidOperationException("The host KV tier ran out of blocks it said it had.");
            _stores.Add(new KvBlockCopy(blocks[i].BlockId, hostBlocks[i]));
        }

        _swapped[request.RequestId] = new SwappedRequest(hostBlocks, numTokens);
        _offloadStats = _offloadStats with { StoredBlocks = _offloadStats.StoredBlocks + numBlocks };
        return true;
    }

    /// <summary>Releases a swapped-out request's host blocks (it finished, or the device holds all it swapped).</summary>
    public void DropSwappedBlocks(Request request)
    {
        if (_swapped.Remove(request.RequestId, out SwappedRequest? swapped))
        {
            foreach (int block in swapped.HostBlocks)
            {
                Host!.Unpin(block);
            }
        }
    }

    /// <summary>
    /// The runner finished a load: its host blocks are unpinned and its device blocks join the prefix cache. Returns the
    /// request to schedule, or null when it was freed meanwhile (its blocks are freed now).
    /// </summary>
    public Request? FinishLoad(long loadId)
    {
        if (!_pendingLoads.Remove(loadId, out PendingLoad? load))
        {
            throw new InvalidOperationException($"Load {loadId} is not pending.");
        }

        foreach (int block in load.HostBlocks)
        {
            Host!.Unpin(block);
        }

        if (load.Abandoned is { } blocks)
        {
            blocks.Reverse();
            BlockPool.FreeBlocks(blocks);
            return null;
        }

        _loadOfRequest.Remove(load.Request.RequestId);
        CacheBlocks(load.Request, load.NumTokens);
        return load.Request;
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
        if (!HasRoomFor(numBlocksToAllocate, newComputedBlocks))
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
    /// Releases the request's device blocks. Freed in reverse order so that, among equally old blocks,
    /// the tail of a sequence (least likely to be shared as a prefix) is evicted first. The blocks of a request
    /// whose load is still running are freed when it is done: the copies may still write them.
    /// </summary>
    public void Free(Request request)
    {
        if (_requestBlocks.Remove(request.RequestId, out List<KvCacheBlock>? blocks))
        {
            if (_loadOfRequest.Remove(request.RequestId, out long loadId))
            {
                _pendingLoads[loadId].Abandoned = blocks;
            }
            else
            {
                blocks.Reverse();
                BlockPool.FreeBlocks(blocks);
            }
        }
        _numCachedBlocks.Remove(request.RequestId);
    }

    public IReadOnlyList<int> GetBlockIds(string requestId) =>
        _requestBlocks.TryGetValue(requestId, out List<KvCacheBlock>? blocks) ? blocks.Select(b => b.BlockId).ToArray() : [];

    /// <summary>The copies decided since the previous call (stores first, then loads), for this step's runner.</summary>
    public KvTransfers TakeTransfers()
    {
        if (_stores is null && _loads is null)
        {
            return KvTransfers.None;
        }

        var transfers = new KvTransfers(_stores ?? [], _loads ?? []);
        _stores = null;
        _loads = null;
        return transfers;
    }

    /// <summary>Prefix-cache counters since the previous call.</summary>
    public PrefixCacheStats TakePrefixCacheStats()
    {
        var stats = new PrefixCacheStats(_statRequests, _statQueries, _statHits);
        _statRequests = _statQueries = _statHits = 0;
        return stats;
    }

    /// <summary>The host tier's counters since the previous call (all zero without one).</summary>
    public KvOffloadStats TakeOffloadStats()
    {
        long evictions = Host?.NumEvictions ?? 0;
        KvOffloadStats stats = _offloadStats with { Evictions = evictions - _evictionsReported };
        _evictionsReported = evictions;
        _offloadStats = default;
        return stats;
    }

    /// <summary>
    /// Forgets every cached hash, the host tier's unpinned blocks too unless <paramref name="keepHostTier"/> (the device
    /// cache's contents are lost but the host copies still hold the same model's keys and values); only when no request
    /// holds a device block.
    /// </summary>
    public bool ResetPrefixCache(bool keepHostTier = false)
    {
        if (!BlockPool.ResetPrefixCache())
        {
            return false;
        }

        if (!keepHostTier)
        {
            Host?.Clear();
        }

        return true;
    }

    /// <summary>
    /// Whether <paramref name="numNewBlocks"/> blocks can be taken along with <paramref name="hits"/>: cache hits that
    /// nobody holds are still in the free queue, so reviving them uses up free blocks too.
    /// </summary>
    private bool HasRoomFor(int numNewBlocks, IReadOnlyList<KvCacheBlock> hits)
    {
        int numEvictableHits = 0;
        foreach (KvCacheBlock hit in hits)
        {
            numEvictableHits += hit.RefCount == 0 && !hit.IsNull ? 1 : 0;
        }

        return numNewBlocks + numEvictableHits <= BlockPool.NumFreeBlocks;
    }

    /// <summary>
    /// Takes the device hits and a new block for each host block, and queues the copies; the hits are the request's
    /// cached blocks, the loaded ones are cached when the load is done.
    /// </summary>
    private KvLoad StartLoad(Request request, IReadOnlyList<KvCacheBlock> deviceHits, int[] hostBlocks, int numTokens)
    {
        BlockPool.Touch(deviceHits);
        List<KvCacheBlock> newBlocks = BlockPool.GetNewBlocks(hostBlocks.Length);
        _requestBlocks[request.RequestId] = [.. deviceHits, .. newBlocks];
        _numCachedBlocks[request.RequestId] = deviceHits.Count;

        var copies = new KvBlockCopy[hostBlocks.Length];
        for (int i = 0; i < copies.Length; i++)
        {
            copies[i] = new KvBlockCopy(newBlocks[i].BlockId, hostBlocks[i]);
        }

        var load = new KvLoad(++_lastLoadId, copies);
        (_loads ??= []).Add(load);
        _pendingLoads[load.LoadId] = new PendingLoad(request, hostBlocks, numTokens);
        _loadOfRequest[request.RequestId] = load.LoadId;
        _offloadStats = _offloadStats with { LoadedBlocks = _offloadStats.LoadedBlocks + copies.Length };
        return load;
    }

    /// <summary>
    /// Allocation is about to reuse a cached block: its contents go to the host tier first, unless the tier holds them
    /// already (made most recently used then) or every host block is pinned (the block is dropped, as without a tier).
    /// </summary>
    private void Offload(KvCacheBlock block, BlockHash hash)
    {
        if (Host!.Lookup(hash) is not null || Host.Store(hash) is not int hostBlock)
        {
            return;
        }

        (_stores ??= []).Add(new KvBlockCopy(block.BlockId, hostBlock));
        _offloadStats = _offloadStats with { StoredBlocks = _offloadStats.StoredBlocks + 1 };
    }

    private static int CeilDiv(int a, int b) => (a + b - 1) / b;

    /// <summary>A queued load: whose it is, the host blocks it reads (pinned), and the tokens it brings back.</summary>
    private sealed class PendingLoad(Request request, int[] hostBlocks, int numTokens)
    {
        public Request Request { get; } = request;
        public int[] HostBlocks { get; } = hostBlocks;
        public int NumTokens { get; } = numTokens;

        /// <summary>The device blocks of a request freed while its load ran, released when the load is done.</summary>
        public List<KvCacheBlock>? Abandoned { get; set; }
    }

    /// <summary>A request preempted by swapping: its pinned host blocks, in order, holding its first <see cref="NumTokens"/> tokens.</summary>
    private sealed record SwappedRequest(int[] HostBlocks, int NumTokens);
}
