using System.Globalization;
using Celer.Engine;
using Celer.Server.Protocol;

namespace Celer.Server.Serving;

/// <summary>
/// <c>POST /v1/completions</c> (vLLM's <c>OpenAIServingCompletion</c>): every prompt of the batch is
/// tokenized, checked and turned into an engine request before any is admitted; choice
/// <c>prompt_index × n + sample_index</c> holds each result.
/// </summary>
internal sealed partial class CompletionService(ServingModel model, AdmissionControl admission, ILogger<CompletionService> logger, ServerOptions options)
{
    private sealed record Prepared(string Id, string ModelName, CompletionRequest Request, IReadOnlyList<PromptInput> Prompts, IReadOnlyList<GenerateRequest> EngineRequests, int N);

    /// <summary>A prepared batch with its engine streams, started once the batch is admitted.</summary>
    private sealed record Started(Prepared Prepared, IReadOnlyList<IAsyncEnumerable<RequestOutput>> Streams);

    public async Task<IResult> HandleAsync(HttpContext context, CompletionRequest request)
    {
        var prepared = Prepare(request);
        // The lease goes to the streaming result, or is disposed by the using below or by StartAsync when the engine refuses.
#pragma warning disable CA2000
        var lease = admission.Enter(prepared.EngineRequests.Count, prepared.N);
#pragma warning restore CA2000
        var started = new Started(prepared, await StartAsync(prepared.EngineRequests, lease, context.RequestAborted));
        if (options.EnableLogRequests && logger.IsEnabled(LogLevel.Information))
            LogReceived(prepared.Id, prepared.Prompts.Count, prepared.N, request.Stream == true);

        if (request.Stream == true)
            return new StreamingResult(ctx => StreamAsync(ctx, started), lease);
        using (lease)
            return TypedResults.Json(await CompleteAsync(started, context.RequestAborted), ServerJsonContext.Wire.CompletionResponse);
    }

    [LoggerMessage(Level = LogLevel.Information, Message = "Received request {RequestId}: {Prompts} prompt(s), n={N}, stream={Stream}")]
    private partial void LogReceived(string requestId, int prompts, int n, bool stream);

    private Prepared Prepare(CompletionRequest request)
    {
        var modelName = model.PrimaryName;
        if (request.Suffix is not null)
            throw OpenAIException.BadRequest("suffix is not currently supported.", "suffix");
        UnsupportedFields.Check(request);

        var prompts = CompletionPrompts.Parse(request.Prompt, model.Tokenizer, request.AddSpecialTokens ?? true, model.VocabSize);
        var id = "cmpl-" + Guid.NewGuid().ToString("N");
        var engineRequests = new List<GenerateRequest>(prompts.Count);
        var n = 1;
        for (var i = 0; i < prompts.Count; i++)
        {
            var promptLength = prompts[i].TokenIds.Length;
            var sampling = SamplingParamsFactory.ForCompletion(request, model.Defaults, promptLength, model.MaxModelLen);
            sampling.Validate(model.VocabSize, model.MaxLogprobs);
            ContextLength.Check(promptLength, sampling.MaxTokens, model.MaxModelLen, "prompt");
            n = sampling.N;
            engineRequests.Add(new GenerateRequest($"{id}-{i}", prompts[i].TokenIds, sampling, request.Priority ?? 0, request.CacheSalt));
        }
        return new Prepared(id, modelName, request, prompts, engineRequests, n);
    }

    /// <summary>
    /// Submits every request of the batch; the engine's admission errors throw here, before any
    /// response is started. If one is refused, the ones already submitted are aborted.
    /// </summary>
    private async Task<IReadOnlyList<IAsyncEnumerable<RequestOutput>>> StartAsync(IReadOnlyList<GenerateRequest> requests, IDisposable lease, CancellationToken cancellationToken)
    {
        var streams = new List<IAsyncEnumerable<RequestOutput>>(requests.Count);
        try
        {
            foreach (var request in requests)
                streams.Add(model.Engine.GenerateAsync(request, cancellationToken));
            return streams;
        }
        catch
        {
            lease.Dispose();
            for (var i = 0; i < streams.Count; i++)
                await model.Engine.AbortAsync(requests[i].RequestId);
            throw;
        }
    }

    private async Task<CompletionResponse> CompleteAsync(Started started, CancellationToken cancellationToken)
    {
        var prepared = started.Prepared;
        var accumulators = prepared.EngineRequests.Select(r => new RequestAccumulator(r.Params.N)).ToArray();
        await foreach (var (promptIndex, output) in OutputStreams.MergeAsync(started.Streams, cancellationToken))
            accumulators[promptIndex].Add(output);

        var request = prepared.Request;
        var echo = request.Echo == true;
        var formatter = new LogprobsFormatter(model.Tokenizer, request.ReturnTokensAsTokenIds == true);
        var choices = new List<CompletionChoice>(accumulators.Length * prepared.N);
        int promptTokens = 0, completionTokens = 0, cachedTokens = 0;
        for (var p = 0; p < accumulators.Length; p++)
        {
            var acc = accumulators[p];
            var promptIds = prepared.Prompts[p].TokenIds;
            promptTokens += promptIds.Length;
            completionTokens += acc.CompletionTokens;
            cachedTokens += acc.NumCachedTokens;
            var promptText = echo ? PromptText(prepared.Prompts[p]) : "";
            var promptLogprobs = acc.PromptLogprobs is { } pl && request.PromptLogprobs is not null ? formatter.PromptLogprobs(pl) : null;
            for (var s = 0; s < acc.Sequences.Length; s++)
            {
                var sequence = acc.Sequences[s];
                CompletionLogprobs? logprobs = null;
                if (request.Logprobs is not null)
                {
                    logprobs = new CompletionLogprobs();
                    if (echo)
                        formatter.AppendCompletionLogprobs(logprobs, promptIds, acc.PromptLogprobs ?? [], 0);
                    formatter.AppendCompletionLogprobs(logprobs, sequence.TokenIds, sequence.Logprobs, 0);
                }
                choices.Add(new CompletionChoice(
                    p * prepared.N + s,
                    promptText + sequence.Text,
                    logprobs,
                    FinishReasons.ToWire(sequence.FinishReason),
                    StopReasonJson.From(sequence.StopReason),
                    promptLogprobs));
            }
        }
        return new CompletionResponse(prepared.Id, Now(), prepared.ModelName, choices,
            new UsageInfo(promptTokens, promptTokens + completionTokens, completionTokens));
    }

    private async Task StreamAsync(HttpContext context, Started started)
    {
        var prepared = started.Prepared;
        var request = prepared.Request;
        var echo = request.Echo == true;
        var includeUsage = request.StreamOptions?.IncludeUsage == true;
        // stream_options.continuous_usage_stats: each chunk carries its choice's token count so far, as vLLM sends it.
        var continuousUsage = request.StreamOptions?.Continuous == true;
        var formatter = new LogprobsFormatter(model.Tokenizer, request.ReturnTokensAsTokenIds == true);
        var created = Now();
        var sse = await ServerSentEvents.StartAsync(context);
        var accumulators = prepared.EngineRequests.Select(r => new RequestAccumulator(r.Params.N)).ToArray();
        // Characters already sent per choice: the text offset at which a chunk's logprobs start.
        var sentChars = new int[accumulators.Length * prepared.N];
        var echoed = new bool[sentChars.Length];
        var choiceTokens = new int[sentChars.Length];
        try
        {
            await foreach (var (p, output) in OutputStreams.MergeAsync(started.Streams, context.RequestAborted))
            {
                var acc = accumulators[p];
                acc.Add(output);
                foreach (var delta in output.Outputs)
                {
                    var index = p * prepared.N + delta.Index;
                    choiceTokens[index] += delta.TokenIdsDelta.Count;
                    var text = delta.TextDelta;
                    CompletionLogprobs? logprobs = request.Logprobs is not null ? new CompletionLogprobs() : null;
                    if (echo && !echoed[index])
                    {
                        // vLLM sends the prompt with the first chunk of each choice.
                        echoed[index] = true;
                        var promptText = PromptText(prepared.Prompts[p]);
                        if (logprobs is not null)
                            formatter.AppendCompletionLogprobs(logprobs, prepared.Prompts[p].TokenIds, acc.PromptLogprobs ?? [], 0);
                        text = promptText + text;
                    }
                    if (logprobs is not null)
                        formatter.AppendCompletionLogprobs(logprobs, delta.TokenIdsDelta, delta.LogprobsDelta ?? [], sentChars[index]);
                    // Nothing new to say (e.g. a token held back as a partial character).
                    if (text.Length == 0 && delta.FinishReason is null && (logprobs is null || logprobs.Tokens.Count == 0))
                        continue;
                    sentChars[index] += LogprobsFormatter.CodePoints(text);
                    var choice = new CompletionChoice(index, text, logprobs, FinishReasons.ToWire(delta.FinishReason), StopReasonJson.From(delta.StopReason));
                    var promptTokens = prepared.Prompts[p].TokenIds.Length;
                    var usageSoFar = continuousUsage ? new UsageInfo(promptTokens, promptTokens + choiceTokens[index], choiceTokens[index]) : null;
                    await sse.WriteAsync(new CompletionStreamResponse(prepared.Id, created, prepared.ModelName, [choice], usageSoFar), ServerJsonContext.Wire.CompletionStreamResponse);
                }
            }

            if (includeUsage)
            {
                int promptTokens = 0, completionTokens = 0;
                for (var p = 0; p < accumulators.Length; p++)
                {
                    promptTokens += prepared.Prompts[p].TokenIds.Length;
                    completionTokens += accumulators[p].CompletionTokens;
                }
                var usage = new UsageInfo(promptTokens, promptTokens + completionTokens, completionTokens);
                await sse.WriteAsync(new CompletionStreamResponse(prepared.Id, created, prepared.ModelName, [], usage), ServerJsonContext.Wire.CompletionStreamResponse);
            }
        }
        catch (OperationCanceledException) when (context.RequestAborted.IsCancellationRequested)
        {
            return;
        }
        catch (Exception e)
        {
            await sse.WriteErrorAsync(ErrorMapping.ToOpenAIException(e, logger));
        }
        await sse.WriteDoneAsync();
    }

    private string PromptText(PromptInput prompt) => prompt.Text ?? model.Tokenizer.Decode(prompt.TokenIds, skipSpecialTokens: false);

    private static long Now() => DateTimeOffset.UtcNow.ToUnixTimeSeconds();
}
