using Celer.Server.Hosting;
using Celer.Server.Serving;

namespace Celer.Server.Endpoints;

/// <summary>vLLM's <c>/pooling</c>: a pooling model's raw vectors, with the inputs and options of <c>/v1/embeddings</c>.</summary>
public static class PoolingEndpoints
{
    public static IEndpointRouteBuilder MapPoolingApi(this IEndpointRouteBuilder endpoints)
    {
        var group = endpoints.MapGroup("").AddEndpointFilter<ApiErrorFilter>();
        group.MapPost("/pooling", Pool);
        return endpoints;
    }

    private static Task<IResult> Pool(HttpContext context, EmbeddingService service) => service.HandlePoolingAsync(context);
}
