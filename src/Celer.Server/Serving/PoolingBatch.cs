using Celer.Engine;

namespace Celer.Server.Serving;

/// <summary>The outputs of a batch of pooling requests, in the order of the requests, and the prompt tokens they ran.</summary>
internal sealed record PooledVectors(float[][] Vectors, int PromptTokens);

/// <summary>
/// The engine side shared by every pooling route (<c>/v1/embeddings</c>, <c>/pooling</c>, <c>/classify</c>, <c>/score</c>,
/// <c>/rerank</c>): vLLM's <c>truncate_prompt_tokens</c> and <c>use_activation</c>, and one batch of pooling requests
/// submitted at once and awaited to their outputs (vectors, class probabilities or scores).
/// </summary>
internal static class PoolingBatch
{
    /// <summary>
    /// vLLM's <c>truncate_prompt_tokens</c>: null keeps every token (an input longer than the context is refused), -1 cuts
    /// to the model's maximum length, k ≥ 1 to k tokens, which may not exceed that length. The result is the number of
    /// tokens to keep, for <see cref="KeepLast"/>.
    /// </summary>
    public static int? TruncationLength(int? truncatePromptTokens, int maxModelLen)
    {
        switch (truncatePromptTokens)
        {
            case null:
                return null;
            case -1:
                return maxModelLen;
            case < -1 or 0:
                throw OpenAIException.BadRequest(
                    $"`truncate_prompt_tokens` must be -1 (the model's maximum length) or at least 1, got {truncatePromptTokens}.", "truncate_prompt_tokens");
            case { } k when k > maxModelLen:
                throw OpenAIException.BadRequest(
                    $"truncate_prompt_tokens value ({k}) is greater than max_model_len ({maxModelLen}). Please, select a smaller truncation size.",
                    "truncate_prompt_tokens");
            case { } k:
                return k;
        }
    }

    /// <summary>
    /// vLLM's <c>use_activation</c> on a classification or a cross-encoder score (false: the raw logits), read as vLLM's
    /// <c>get_use_activation</c> reads it: the deprecated <c>softmax</c>, then <c>activation</c>, then
    /// <c>use_activation</c>, true when none is given.
    /// </summary>
    public static bool UseActivation(bool? softmax, bool? activation, bool? useActivation) => softmax ?? activation ?? useActivation ?? true;

    /// <summary>vLLM truncates on the left: the last <paramref name="keepLast"/> tokens stay (null: all of them).</summary>
    public static int[] KeepLast(int[] tokenIds, int? keepLast) =>
        keepLast is { } k && tokenIds.Length > k ? tokenIds[^k..] : tokenIds;

    /// <summary>
    /// Submits every request at once and waits for all their vectors. The engine's admission errors (a generative model,
    /// an input longer than the context, <c>dimensions</c> it cannot give) throw before anything is answered, and the
    /// requests already submitted are aborted; the client going away aborts them all.
    /// </summary>
    public static async Task<PooledVectors> RunAsync(AsyncLlmEngine engine, IReadOnlyList<GenerateRequest> requests, CancellationToken cancellationToken)
    {
        var streams = await StartAsync(engine, requests, cancellationToken);
        var vectors = new float[requests.Count][];
        var promptTokens = 0;
        await foreach (var (index, output) in OutputStreams.MergeAsync(streams, cancellationToken))
        {
            if (!output.Finished)
                continue;
            // Only an abort (a shutdown out of time) ends a pooling request without its vector.
            vectors[index] = output.PoolerOutput ?? throw OpenAIException.Unavailable(
                "The request was aborted before its vector was computed: the server is shutting down.", AdmissionControl.RetryAfterSeconds);
            promptTokens += output.PromptTokenIds.Count;
        }
        return new PooledVectors(vectors, promptTokens);
    }

    private static async Task<IReadOnlyList<IAsyncEnumerable<RequestOutput>>> StartAsync(
        AsyncLlmEngine engine, IReadOnlyList<GenerateRequest> requests, CancellationToken cancellationToken)
    {
        var streams = new List<IAsyncEnumerable<RequestOutput>>(requests.Count);
        try
        {
            foreach (var request in requests)
                streams.Add(engine.GenerateAsync(request, cancellationToken));
            return streams;
        }
        catch
        {
            for (var i = 0; i < streams.Count; i++)
                await engine.AbortAsync(requests[i].RequestId);
            throw;
        }
    }
}
