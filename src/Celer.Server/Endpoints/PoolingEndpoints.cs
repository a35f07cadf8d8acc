using Celer.Server.Hosting;
using Celer.Server.Serving;

namespace Celer.Server.Endpoints;

/// <summary>
/// vLLM's pooling routes besides <c>/v1/embeddings</c>: <c>/pooling</c> (a pooling model's raw vectors, with the inputs and
/// options of <c>/v1/embeddings</c>), <c>/score</c> and <c>/rerank</c> (the cosine similarity of two texts' vectors), at
/// the paths vLLM serves them.
/// </summary>
public static class PoolingEndpoints
{
    public static IEndpointRouteBuilder MapPoolingApi(this IEndpointRouteBuilder endpoints)
    {
        var group = endpoints.MapGroup("").AddEndpointFilter<ApiErrorFilter>();
        group.MapPost("/pooling", Pool);
        group.MapPost("/score", Score);
        group.MapPost("/v1/score", Score);
        group.MapPost("/rerank", Rerank);
        group.MapPost("/v1/rerank", Rerank);
        group.MapPost("/v2/rerank", Rerank);
        return endpoints;
    }

    private static Task<IResult> Pool(HttpContext context, EmbeddingService service) => service.HandlePoolingAsync(context);

    private static Task<IResult> Score(HttpContext context, ScoreService service) => service.HandleScoreAsync(context);

    private static Task<IResult> Rerank(HttpContext context, ScoreService service) => service.HandleRerankAsync(context);
}
