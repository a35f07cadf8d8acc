namespace Celer.Engine.KvCache;

/// <summary>
/// One physical KV block's bookkeeping (vLLM's <c>KVCacheBlock</c>). The tensors live in the
/// backend; the engine only tracks who holds the block, whether its contents are a cached full
/// block, and its place in the free list.
/// </summary>
public sealed class KvCacheBlock(int blockId)
{
    public int BlockId { get; } = blockId;

    /// <summary>Requests holding the block. Zero means it sits in the free queue (possibly still cached).</summary>
    public int RefCount { get; internal set; }

    /// <summary>Set while the block is a full block registered in the prefix cache.</summary>
    public BlockHash? Hash { get; internal set; }

    /// <summary>The null block (id 0) pads block tables and is never handed out.</summary>
    public bool IsNull { get; internal init; }

    // Free-list links: intrusive so removing a cache hit from the middle of the queue is O(1).
    internal KvCacheBlock? PrevFree { get; set; }
    internal KvCacheBlock? NextFree { get; set; }

    public override string ToString() => $"Block({BlockId}, ref={RefCount}, hash={Hash?.ToString() ?? "-"})";
}
