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

    private static IResult ListModels(ServingModel model)
    {
        var cards = model.ServedModelNames
            .Select(name => new ModelCard(name, model.Created, "celer", model.Root, null, model.MaxModelLen))
            .ToList();
        return TypedResults.Json(new ModelList(cards), ServerJsonContext.Wire.ModelList);
    }

    /// <summary>
    /// <c>GET /v1/models/{id}</c>, what the OpenAI SDKs' <c>models.retrieve</c> calls: the card of a served name, else
    /// OpenAI's 404 <c>model_not_found</c>.
    /// </summary>
    private static IResult RetrieveModel(string id, ServingModel model)
    {
        if (!model.ServedModelNames.Contains(id, StringComparer.Ordinal))
        {
            throw OpenAIException.ModelNotFound(id);
        }

        return TypedResults.Json(new ModelCard(id, model.Created, "celer", model.Root, null, model.MaxModelLen), ServerJsonContext.Wire.ModelCard);
    }

    private static Task<IResult> CreateCompletion(HttpContext context, CompletionService service) => service.HandleAsync(context);

    private static Task<IResult> CreateChatCompletion(HttpContext context, ChatService service) => service.HandleAsync(context);

    private static Task<IResult> CreateEmbedding(HttpContext context, EmbeddingService service) => service.HandleEmbeddingsAsync(context);
}
