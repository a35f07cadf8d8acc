using Celer.Engine;
using Celer.Server.Protocol;

namespace Celer.Server.Serving;

/// <summary>
/// <c>POST /v1/embeddings</c> (vLLM's <c>OpenAIServingEmbedding</c>) and vLLM's <c>POST /pooling</c>: every input is
/// tokenized, truncated and checked, then each becomes one pooling request of the engine (<c>{id}-{index}</c>), all
/// submitted at once; the response lists the vectors in the order of the inputs. The engine refuses what only it can
/// judge, with vLLM's messages: a generative model, an input longer than the context, <c>dimensions</c> on a model not
/// trained for shorter vectors. A request with <c>messages</c> instead of <c>input</c> (vLLM's <c>EmbeddingChatRequest</c>)
/// is one input: the conversation rendered by the chat template, as <see cref="ChatPromptBuilder"/> renders a chat's prompt.
/// </summary>
internal sealed partial class EmbeddingService(ServingModel model, AdmissionControl admission, ILogger<EmbeddingService> logger, ServerOptions options)
{
    /// <summary>Most inputs in one request: OpenAI's limit for the embeddings API.</summary>
    public const int MaxInputs = 2048;

    private const string InputField = "input";

    // An empty string is an input as long as the tokenizer makes a token of it (a BOS); only an input of no tokens is refused.
    private static readonly CompletionPrompts.Rules InputRules = new(InputField, MaxInputs, AllowEmptyText: true);

    /// <summary>The two routes: their id prefix and how they wrap the vectors.</summary>
    private enum Route
    {
        Embeddings,
        Pooling,
    }

    private sealed record Prepared(string Id, string ModelName, bool Base64, IReadOnlyList<GenerateRequest> EngineRequests)
    {
        public int PromptTokens { get; } = EngineRequests.Sum(r => r.PromptTokenIds.Count);
    }

    public Task<IResult> HandleEmbeddingsAsync(HttpContext context) => HandleAsync(context, Route.Embeddings);

    public Task<IResult> HandlePoolingAsync(HttpContext context) => HandleAsync(context, Route.Pooling);

    private async Task<IResult> HandleAsync(HttpContext context, Route route)
    {
        var request = await RequestBody.ReadAsync(context.Request, ServerJsonContext.Wire.EmbeddingRequest);
        var prepared = Prepare(request, route);
        using var lease = admission.Enter(prepared.EngineRequests.Count, 1, InputField);
        if (options.EnableLogRequests && logger.IsEnabled(LogLevel.Information))
            LogReceived(prepared.Id, prepared.EngineRequests.Count, prepared.PromptTokens);
        var (vectors, promptTokens) = await PoolingBatch.RunAsync(model.Engine, prepared.EngineRequests, context.RequestAborted);

        var usage = new EmbeddingUsage(promptTokens, promptTokens);
        var created = DateTimeOffset.UtcNow.ToUnixTimeSeconds();
        PooledVector Encode(float[] vector) => prepared.Base64 ? PooledVector.AsBase64(vector) : PooledVector.AsFloats(vector);
        return route switch
        {
            Route.Embeddings => TypedResults.Json(
                new EmbeddingResponse(prepared.Id, created, prepared.ModelName, [.. vectors.Select((v, i) => new EmbeddingData(i, Encode(v)))], usage),
                ServerJsonContext.Wire.EmbeddingResponse),
            _ => TypedResults.Json(
                new PoolingResponse(prepared.Id, created, prepared.ModelName, [.. vectors.Select((v, i) => new PoolingData(i, Encode(v)))], usage),
                ServerJsonContext.Wire.PoolingResponse),
        };
    }

    [LoggerMessage(Level = LogLevel.Information, Message = "Received request {RequestId}: {Inputs} input(s), {PromptTokens} prompt tokens")]
    private partial void LogReceived(string requestId, int inputs, int promptTokens);

    /// <summary>Every check the server can make, in the order vLLM makes them, before anything reaches the engine.</summary>
    private Prepared Prepare(EmbeddingRequest request, Route route)
    {
        var modelName = model.ResolveModelName(request.Model);
        var base64 = request.EncodingFormat switch
        {
            null or "float" => false,
            "base64" => true,
            var other => throw OpenAIException.BadRequest($"`encoding_format` must be \"float\" or \"base64\", got \"{other}\".", "encoding_format"),
        };
        if (request.Dimensions is < 1)
            throw OpenAIException.BadRequest($"`dimensions` must be at least 1, got {request.Dimensions}.", "dimensions");
        var keepLast = PoolingBatch.TruncationLength(request.TruncatePromptTokens, model.MaxModelLen);

        var inputs = request.Messages is null
            ? [.. CompletionPrompts.Parse(request.Input, model.Tokenizer, request.AddSpecialTokens ?? true, model.VocabSize, InputRules).Select(p => p.TokenIds)]
            : new[] { RenderMessages(request) };
        var id = (route == Route.Embeddings ? "embd-" : "pool-") + Guid.NewGuid().ToString("N");
        var pooling = new PoolingParams { Dimensions = request.Dimensions, Normalize = request.Normalize };
        var engineRequests = new List<GenerateRequest>(inputs.Length);
        for (var i = 0; i < inputs.Length; i++)
            engineRequests.Add(GenerateRequest.ForPooling($"{id}-{i}", PoolingBatch.KeepLast(inputs[i], keepLast), pooling, request.Priority ?? 0));
        return new Prepared(id, modelName, base64, engineRequests);
    }

    /// <summary>
    /// vLLM's <c>EmbeddingChatRequest</c>: the conversation rendered by the chat template as a chat completion's prompt is
    /// (vLLM's defaults for embeddings: no generation prompt, no special tokens beyond the template's), one input.
    /// </summary>
    private int[] RenderMessages(EmbeddingRequest request)
    {
        if (request.Input is not null)
            throw OpenAIException.BadRequest("Send either `input` or `messages`, not both.", "messages");
        var prompt = ChatPromptBuilder.Render(new ChatRenderRequest(
            request.Messages, null, null,
            request.AddGenerationPrompt ?? false, request.ContinueFinalMessage ?? false,
            request.ChatTemplate, request.ChatTemplateKwargs), model);
        var ids = model.Tokenizer.Encode(prompt.Text, request.AddSpecialTokens ?? false);
        return ids.Length > 0 ? ids : throw OpenAIException.BadRequest("The rendered chat prompt is empty.", "messages");
    }
}
