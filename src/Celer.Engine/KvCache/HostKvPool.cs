namespace Celer.Engine.KvCache;

/// <summary>
/// The host tier's bookkeeping (vLLM's CPU offloading manager, LMCache's local CPU backend): which host block holds which
/// full block, by its chained hash, in least-recently-used order. The bytes live in the backend; this only decides
/// where they go. A block is pinned while a queued load reads it or a swapped-out request owns it: pinned blocks are never
/// evicted, so no store can overwrite what a load has yet to read. Anonymous blocks (a swapped-out request's, whose last
/// block may be partial) have no hash and are never found by a lookup.
/// </summary>
public sealed class HostKvPool
{
    private readonly Entry[] _entries;
    private readonly Dictionary<BlockHash, int> _byHash = [];
    private readonly Stack<int> _free;
    // Hashed blocks, least recently used first; pinned ones stay in place and are skipped by eviction.
    private readonly LinkedList<int> _lru = new();
    private int _numPinned;

    public HostKvPool(int numBlocks)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(numBlocks);
        _entries = new Entry[numBlocks];
        // Popped in ascending order, so a fresh pool fills runs of adjacent blocks (fewer, larger copies).
        _free = new Stack<int>(Enumerable.Range(0, numBlocks).Reverse());
    }

    public int NumBlocks => _entries.Length;

    /// <summary>Blocks holding a hashed block or a swapped-out request's block.</summary>
    public int NumUsedBlocks => NumBlocks - _free.Count;

    public float Usage => (float)NumUsedBlocks / NumBlocks;

    /// <summary>Blocks a store could take now: free ones and unpinned hashed ones (evicted to make room).</summary>
    public int NumAvailableBlocks => NumBlocks - _numPinned;

    /// <summary>Hashed blocks dropped to make room, since the pool was made.</summary>
    public long NumEvictions { get; private set; }

    public bool Contains(BlockHash hash) => _byHash.ContainsKey(hash);

    /// <summary>The host block holding <paramref name="hash"/>, made the most recently used; null when the pool has none.</summary>
    public int? Lookup(BlockHash hash)
    {
        if (!_byHash.TryGetValue(hash, out int block))
        {
            return null;
        }

        Touch(block);
        return block;
    }

    /// <summary>
    /// A host block for <paramref name="hash"/>: a free one, else the least recently used unpinned one, evicted. Null when
    /// every block is pinned. The caller copies the block's bytes in before any load of it.
    /// </summary>
    public int? Store(BlockHash hash)
    {
        if (_byHash.ContainsKey(hash))
        {
            throw new InvalidOperationException($"Block {hash} is already in the host KV cache.");
        }

        if (TakeBlock() is not int block)
        {
            return null;
        }

        _entries[block] = new Entry { Hash = hash, LruNode = _lru.AddLast(block) };
        _byHash.Add(hash, block);
        return block;
    }

    /// <summary>A pinned block with no hash (a swapped-out request's), or null when every block is pinned.</summary>
    public int? AllocateAnonymous()
    {
        if (TakeBlock() is not int block)
        {
            return null;
        }

        _entries[block] = new Entry { Pins = 1 };
        _numPinned++;
        return block;
    }

    public void Pin(int block)
    {
        if (_entries[block].Pins++ == 0)
        {
            _numPinned++;
        }
    }

    /// <summary>Drops a pin; an anonymous block with no pins left is free again.</summary>
    public void Unpin(int block)
    {
        ref Entry entry = ref _entries[block];
        if (entry.Pins <= 0)
        {
            throw new InvalidOperationException($"Host block {block} is not pinned.");
        }

        if (--entry.Pins > 0)
        {
            return;
        }

        _numPinned--;
        if (entry.Hash is null)
        {
            entry = default;
            _free.Push(block);
        }
    }

    /// <summary>Forgets every unpinned hashed block (a prefix-cache reset).</summary>
    public void Clear()
    {
        for (LinkedListNode<int>? node = _lru.First; node is not null;)
        {
            LinkedListNode<int>? next = node.Next;
            if (_entries[node.Value].Pins == 0)
            {
                Drop(node.Value);
            }

            node = next;
        }
    }

    /// <summary>The hashed blocks from least to most recently used (tests, diagnostics).</summary>
    public IReadOnlyList<BlockHash> HashesInLruOrder() => [.. _lru.Select(block => _entries[block].Hash!.Value)];

    private void Touch(int block)
    {
        LinkedListNode<int> node = _entries[block].LruNode!;
        _lru.Remove(node);
        _lru.AddLast(node);
    }

    private int? TakeBlock()
    {
        if (_free.Count > 0)
        {
            return _free.Pop();
        }

        for (LinkedListNode<int>? node = _lru.First; node is not null; node = node.Next)
        {
            if (_entries[node.Value].Pins == 0)
            {
                int block = node.Value;
                Drop(block);
                NumEvictions++;
                return _free.Pop();
            }
        }

        return null;
    }

    private void Drop(int block)
    {
        ref Entry entry = ref _entries[block];
        _byHash.Remove(entry.Hash!.Value);
        _lru.Remove(entry.LruNode!);
        entry = default;
        _free.Push(block);
    }

    private struct Entry
    {
        public BlockHash? Hash;
        public LinkedListNode<int>? LruNode;
        public int Pins;
    }
}
