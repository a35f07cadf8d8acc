using System.Runtime.InteropServices;
using Celer.Engine.KvCache;

namespace Celer.Engine.Scheduling;

/// <summary>
/// One sequence inside the engine core (vLLM's <c>Request</c>). A user request with n &gt; 1 is
/// n of these ("child requests"). Mutated only by the scheduler's thread.
/// </summary>
public sealed class Request
{
    private readonly List<int> _allTokenIds;
    private readonly List<int> _outputTokenIds = [];
    private readonly HashSet<int> _stopTokenIds;

    public Request(
        string requestId,
        IReadOnlyList<int> promptTokenIds,
        SamplingParams samplingParams,
        int maxTokens,
        int? eosTokenId,
        int priority = 0,
        double arrivalTime = 0,
        string? cacheSalt = null)
    {
        if (promptTokenIds.Count == 0)
        {
            throw new ArgumentException("A request needs at least one prompt token.", nameof(promptTokenIds));
        }
        RequestId = requestId;
        PromptTokenIds = promptTokenIds.ToArray();
        SamplingParams = samplingParams;
        MaxTokens = maxTokens;
        EosTokenId = eosTokenId;
        Priority = priority;
        ArrivalTime = arrivalTime;
        CacheSalt = cacheSalt;
        _allTokenIds = new List<int>(PromptTokenIds.Count + Math.Min(maxTokens, 4096));
        _allTokenIds.AddRange(PromptTokenIds);
        _stopTokenIds = [.. samplingParams.StopTokenIds];
    }

    public string RequestId { get; }
    public IReadOnlyList<int> PromptTokenIds { get; }
    public IReadOnlyList<int> OutputTokenIds => _outputTokenIds;
    public IReadOnlyList<int> AllTokenIds => _allTokenIds;
    public SamplingParams SamplingParams { get; }

    /// <summary>Resolved at admission: the request's max_tokens, or the rest of the context.</summary>
    public int MaxTokens { get; }
    public int? EosTokenId { get; }
    public int Priority { get; }

    /// <summary>Seconds on the engine's monotonic clock when the request arrived.</summary>
    public double ArrivalTime { get; }

    /// <summary>Tie-breaker among equal priority and arrival time, set by the scheduler on admission.</summary>
    public long ArrivalOrder { get; internal set; }
    public string? CacheSalt { get; }

    public RequestStatus Status { get; internal set; } = RequestStatus.Waiting;

    /// <summary>Tokens whose KV is (or, once this step runs, will be) in the cache.</summary>
    public int NumComputedTokens { get; internal set; }

    /// <summary>Prompt tokens served from the prefix cache at first admission; -1 until scheduled.</summary>
    public int NumCachedTokens { get; internal set; } = -1;

    /// <summary>The stop token id that finished the request, when one did.</summary>
    public object? StopReason { get; internal set; }
    public int NumPreemptions { get; internal set; }

    /// <summary>Hashes of the full blocks of <see cref="AllTokenIds"/>, filled lazily by <see cref="BlockHasher"/>.</summary>
    public List<BlockHash> BlockHashes { get; } = [];

    /// <summary>
    /// Tokens sampled by steps still in flight (async scheduling): the scheduler already fed them to the next step,
    /// whose runner takes them from its own samples, but their ids are not known here yet.
    /// </summary>
    internal int NumOutputPlaceholders { get; set; }

    /// <summary>
    /// Speculative decoding: draft tokens the runner proposed to follow this request's tokens, which its next step
    /// verifies (they take KV slots and budget then, and are not the request's tokens until accepted).
    /// </summary>
    internal int[] SpecTokenIds { get; set; } = [];

    // Core-side timings on the engine's monotonic clock (seconds); 0 = not yet.
    public double QueuedTime { get; internal set; }
    public double FirstScheduledTime { get; internal set; }

    public int NumPromptTokens => PromptTokenIds.Count;
    public int NumOutputTokens => _outputTokenIds.Count;
    public int NumTokens => _allTokenIds.Count;
    public bool IsFinished => Status.IsFinished();

    /// <summary>Whether finished prompt positions may be read from the prefix cache: prompt
    /// logprobs need the logits of every position, so those requests recompute all of it (as vLLM does).</summary>
    public bool SkipPrefixCacheReads => SamplingParams.PromptLogprobs is not null || PoolsEveryToken;

    /// <summary>A pooling model's request: finished once its prompt is computed, with the pooled vector as its output.</summary>
    public PoolingParams? PoolingParams { get; init; }

    /// <summary>Its pooling reads tokens other than the last (mean, CLS), which a prefix-cache hit would leave uncomputed.</summary>
    public bool PoolsEveryToken { get; init; }

    /// <summary>The prompt's images, by position: their placeholder runs read the images' features, and the images' hashes key the blocks they touch.</summary>
    public IReadOnlyList<Multimodal.PromptImage> Images { get; init; } = [];

    public ReadOnlySpan<int> TokenSpan(int start, int length) => CollectionsMarshal.AsSpan(_allTokenIds).Slice(start, length);

    public bool IsStopTokenId(int tokenId) => _stopTokenIds.Contains(tokenId);

    internal void AppendOutputTokenId(int tokenId)
    {
        _outputTokenIds.Add(tokenId);
        _allTokenIds.Add(tokenId);
    }

    public override string ToString() => $"Request({RequestId}, {Status}, computed={NumComputedTokens}/{NumTokens})";
}
