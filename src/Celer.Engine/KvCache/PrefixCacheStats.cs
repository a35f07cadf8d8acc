namespace Celer.Engine.KvCache;

/// <summary>Prefix-cache lookups since the last snapshot, in tokens (vLLM's <c>PrefixCacheStats</c>):
/// <c>Queries</c> is the prompt tokens looked up, <c>Hits</c> those found cached.</summary>
public readonly record struct PrefixCacheStats(long Requests, long Queries, long Hits);
