using Celer.Engine;
using Celer.Server.Protocol;

namespace Celer.Server.Serving;

/// <summary>
/// <c>POST /v1/embeddings</c> (vLLM's <c>OpenAIServingEmbedding</c>) and vLLM's <c>POST /pooling</c>: every input is
/// tokenized, truncated and checked against the context (<see cref="PoolingInputs"/>), then each becomes one pooling
/// request of the engine (<c>{id}-{index}</c>), all submitted at once; the response lists the vectors in the order of
/// the inputs. The engine refuses what only it can judge, with vLLM's messages: a generative model, a classifier asked
/// for embeddings, <c>dimensions</c> on a model not trained for shorter vectors. On a classifier
/// <c>/pooling</c> gives each input's class probabilities, as vLLM's <c>/pooling</c> does for a classification model.
/// </summary>
internal sealed partial class EmbeddingService(ServingModel model, AdmissionControl admission, ILogger<EmbeddingService> logger, ServerOptions options)
{
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

    public Task<IResult> HandleEmbeddingsAsync(HttpContext context, EmbeddingRequest request) => HandleAsync(context, request, Route.Embeddings);

    public Task<IResult> HandlePoolingAsync(HttpContext context, EmbeddingRequest request) => HandleAsync(context, request, Route.Pooling);

    private async Task<IResult> HandleAsync(HttpContext context, EmbeddingRequest request, Route route)
    {
        var prepared = Prepare(request, route);
        using var lease = admission.Enter(prepared.EngineRequests.Count, 1, PoolingInputs.InputField);
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
        var modelName = model.PrimaryName;
        var base64 = request.EncodingFormat switch
        {
            null or "float" => false,
            "base64" => true,
            var other => throw OpenAIException.BadRequest($"`encoding_format` must be \"float\" or \"base64\", got \"{other}\".", "encoding_format"),
        };
        if (request.Dimensions is < 1)
            throw OpenAIException.BadRequest($"`dimensions` must be at least 1, got {request.Dimensions}.", "dimensions");

        var id = (route == Route.Embeddings ? "embd-" : "pool-") + Guid.NewGuid().ToString("N");
        // vLLM's /pooling runs the model's own task; /v1/embeddings always asks for embeddings (a classifier refuses).
        var task = route == Route.Pooling && model.Classifier is not null ? PoolingTask.Classify : PoolingTask.Embed;
        var pooling = new PoolingParams { Task = task, Dimensions = request.Dimensions, Normalize = request.Normalize };
        return new Prepared(id, modelName, base64, PoolingInputs.ToEngineRequests(model, request, id, pooling, "embedding generation"));
    }
}
