namespace Celer.Engine.KvCache;

/// <summary>
/// The host tier's counters since the last snapshot. <see cref="Queries"/> and <see cref="Hits"/> are in tokens, as the
/// prefix cache's (vLLM's <c>external_prefix_cache_*</c>): the tokens of requests whose lookup reached the host tier, and
/// those loaded from it. <see cref="BlockLookups"/> and <see cref="BlockHits"/> count block hashes looked up there and found
/// (vLLM's <c>kv_offload_cpu_block_lookup</c>/<c>hit</c>). Stored and loaded blocks include a swapped request's.
/// </summary>
public readonly record struct KvOffloadStats(
    long Queries, long Hits, long BlockLookups, long BlockHits, long StoredBlocks, long LoadedBlocks, long Evictions)
{
    /// <summary>Both snapshots' counts together.</summary>
    public KvOffloadStats Add(KvOffloadStats other) => new(
        Queries + other.Queries, Hits + other.Hits, BlockLookups + other.BlockLookups, BlockHits + other.BlockHits,
        StoredBlocks + other.StoredBlocks, LoadedBlocks + other.LoadedBlocks, Evictions + other.Evictions);
}
