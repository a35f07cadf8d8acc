using Celer.Server.Hosting;
using Celer.Server.Protocol;
using Celer.Server.Serving;

namespace Celer.Server.Endpoints;

/// <summary>The OpenAI-compatible routes under <c>/v1</c>.</summary>
public static class OpenAIEndpoints
{
    public static RouteGroupBuilder MapOpenAIApi(this IEndpointRouteBuilder endpoints)
    {
        var v1 = endpoints.MapGroup("/v1").AddEndpointFilter<ApiErrorFilter>();
        v1.MapGet("/models", ListModels);
        v1.MapGet("/models/{id}", RetrieveModel);
        v1.MapPost("/completions", CreateCompletion);
        v1.MapPost("/chat/completions", CreateChatCompletion);
        v1.MapPost("/embeddings", CreateEmbedding);
        return v1;
    }

    private static IResult ListModels(ServedModels models)
    {
        var cards = models.All
            .SelectMany(served => served.Model.ServedModelNames.Select(name => Card(name, served.Model)))
            .ToList();
        return TypedResults.Json(new ModelList(cards), ServerJsonContext.Wire.ModelList);
    }

    private static ModelCard Card(string name, ServingModel model) => new(name, model.Created, "celer", model.Root, null, model.MaxModelLen)
    {
        IsSleeping = model.Engine.SupportsSleep ? model.Engine.IsSleeping : null,
    };

    /// <summary>
    /// <c>GET /v1/models/{id}</c>, what the OpenAI SDKs' <c>models.retrieve</c> calls: the card of a served name, else
    /// OpenAI's 404 <c>model_not_found</c>.
    /// </summary>
    private static IResult RetrieveModel(string id, ServedModels models) =>
        TypedResults.Json(Card(id, models.Resolve(id).Model), ServerJsonContext.Wire.ModelCard);

    private static async Task<IResult> CreateCompletion(HttpContext context, ServedModels models)
    {
        var request = await RequestBody.ReadAsync(context.Request, ServerJsonContext.Wire.CompletionRequest);
        return await models.Resolve(request.Model).Completions.HandleAsync(context, request);
    }

    private static async Task<IResult> CreateChatCompletion(HttpContext context, ServedModels models)
    {
        var request = await RequestBody.ReadAsync(context.Request, ServerJsonContext.Wire.ChatCompletionRequest);
        return await models.Resolve(request.Model).Chat.HandleAsync(context, request);
    }

    private static async Task<IResult> CreateEmbedding(HttpContext context, ServedModels models)
    {
        var request = await RequestBody.ReadAsync(context.Request, ServerJsonContext.Wire.EmbeddingRequest);
        return await models.Resolve(request.Model).Embeddings.HandleEmbeddingsAsync(context, request);
    }
}
