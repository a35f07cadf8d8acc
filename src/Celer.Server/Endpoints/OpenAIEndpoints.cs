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
        v1.MapPost("/completions", CreateCompletion);
        v1.MapPost("/chat/completions", CreateChatCompletion);
        return v1;
    }

    private static IResult ListModels(ServingModel model)
    {
        var cards = model.ServedModelNames
            .Select(name => new ModelCard(name, model.Created, "celer", model.Root, null, model.MaxModelLen))
            .ToList();
        return TypedResults.Json(new ModelList(cards), ServerJsonContext.Wire.ModelList);
    }

    private static Task<IResult> CreateCompletion(HttpContext context, CompletionService service) => service.HandleAsync(context);

    private static Task<IResult> CreateChatCompletion(HttpContext context, ChatService service) => service.HandleAsync(context);
}
