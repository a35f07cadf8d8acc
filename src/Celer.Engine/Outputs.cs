namespace Celer.Engine;

/// <summary>Why a sequence ended; serialized "stop" | "length" | "abort" as in OpenAI's and vLLM's APIs.</summary>
public enum FinishReason
{
    Stop,
    Length,
    Abort,
}

/// <summary>One sample's progress in one <see cref="RequestOutput"/> (vLLM's <c>CompletionOutput</c>, as a delta).</summary>
/// <param name="Index">The sample's index, 0..n−1.</param>
/// <param name="TextDelta">New text since the previous output of this index; stop strings never
/// leak and a partial UTF-8 character is held back.</param>
/// <param name="TokenIdsDelta">Token ids generated since the previous output of this index.</param>
/// <param name="LogprobsDelta">Logprobs of those tokens, when the request asked for them.</param>
/// <param name="FinishReason">Set on the last output of this index.</param>
/// <param name="StopReason">The matched stop string (string) or stop token id (int); null for EOS, length and abort.</param>
public sealed record CompletionOutput(
    int Index,
    string TextDelta,
    IReadOnlyList<int> TokenIdsDelta,
    IReadOnlyList<PositionLogprobs>? LogprobsDelta,
    FinishReason? FinishReason,
    object? StopReason);

/// <summary>
/// One update of a user request (vLLM's <c>RequestOutput</c> in delta mode). <see cref="Outputs"/>
/// holds only the samples that changed; <see cref="Finished"/> is set when all n are done.
/// </summary>
/// <param name="PromptLogprobs">Only on the first output, when asked; position 0 is null as in vLLM.</param>
/// <param name="NumCachedTokens">Prompt tokens served from the prefix cache.</param>
/// <param name="Metrics">Timings and token counts, on the final output only.</param>
public sealed record RequestOutput(
    string RequestId,
    IReadOnlyList<int> PromptTokenIds,
    IReadOnlyList<PositionLogprobs?>? PromptLogprobs,
    IReadOnlyList<CompletionOutput> Outputs,
    bool Finished,
    int NumCachedTokens,
    RequestMetrics? Metrics = null)
{
    /// <summary>A pooling request's vector (vLLM's <c>PoolingRequestOutput.outputs.data</c>), on its final output.</summary>
    public float[]? PoolerOutput { get; init; }
}

/// <summary>A user request: n samples of a continuation of <paramref name="PromptTokenIds"/>, or, with
/// <paramref name="Pooling"/>, a pooling model's vector for them (then <paramref name="Params"/> is not read).</summary>
/// <param name="Priority">Lower is served first under the priority scheduling policy.</param>
/// <param name="CacheSalt">Separates this tenant's prefix-cache entries from everyone else's.</param>
public sealed record GenerateRequest(
    string RequestId,
    IReadOnlyList<int> PromptTokenIds,
    SamplingParams Params,
    int Priority = 0,
    string? CacheSalt = null,
    PoolingParams? Pooling = null)
{
    /// <summary>
    /// The request's images, in the order of their placeholder tokens in <paramref name="PromptTokenIds"/>: one image
    /// token per image, which the engine expands to the image's feature count (as the HF processor does).
    /// </summary>
    public IReadOnlyList<Celer.Models.Multimodal.RgbImage> Images { get; init; } = [];

    /// <summary>A pooling request (an embedding) of a pooling model.</summary>
    public static GenerateRequest ForPooling(string requestId, IReadOnlyList<int> promptTokenIds, PoolingParams pooling, int priority = 0) =>
        new(requestId, promptTokenIds, PoolingSamplingParams, priority, Pooling: pooling);

    // A pooling request samples nothing; the engine's bookkeeping still wants one sampling state per sequence.
    private static readonly SamplingParams PoolingSamplingParams = new() { MaxTokens = 1, Temperature = 0 };
}

/// <summary>A request the engine refuses at admission; the server answers HTTP 400 with
/// <see cref="Param"/> and <see cref="Code"/> in OpenAI's error envelope.</summary>
public sealed class EngineRequestException(string message, string? param = null, string? code = null) : ArgumentException(message)
{
    public string? Param { get; } = param;
    public string? Code { get; } = code;
}

/// <summary>The engine loop threw; every in-flight request ends with this and no new one is admitted.</summary>
public sealed class EngineDeadException(string message, Exception? innerException = null) : Exception(message, innerException);
