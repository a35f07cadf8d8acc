using Celer.Server.Hosting;
using Celer.Server.Protocol;
using Celer.Server.Serving;

namespace Celer.Server.Endpoints;

/// <summary>
/// vLLM's pooling routes besides <c>/v1/embeddings</c>: <c>/pooling</c> (a pooling model's raw output, with the inputs and
/// options of <c>/v1/embeddings</c>), <c>/classify</c> (a classifier's label probabilities), <c>/score</c> and
/// <c>/rerank</c> (a cross-encoder's score of each pair, or the cosine similarity of two texts' vectors), at the paths
/// vLLM serves them.
/// </summary>
public static class PoolingEndpoints
{
    public static IEndpointRouteBuilder MapPoolingApi(this IEndpointRouteBuilder endpoints)
    {
        var group = endpoints.MapGroup("").AddEndpointFilter<ApiErrorFilter>();
        group.MapPost("/pooling", Pool);
        group.MapPost("/classify", Classify);
        group.MapPost("/score", Score);
        group.MapPost("/v1/score", Score);
        group.MapPost("/rerank", Rerank);
        group.MapPost("/v1/rerank", Rerank);
        group.MapPost("/v2/rerank", Rerank);
        return endpoints;
    }

    private static async Task<IResult> Pool(HttpContext context, ServedModels models)
    {
        var request = await RequestBody.ReadAsync(context.Request, ServerJsonContext.Wire.EmbeddingRequest);
        return await models.Resolve(request.Model).Embeddings.HandlePoolingAsync(context, request);
    }

    private static async Task<IResult> Classify(HttpContext context, ServedModels models)
    {
        var request = await RequestBody.ReadAsync(context.Request, ServerJsonContext.Wire.ClassificationRequest);
        return await models.Resolve(request.Model).Classification.HandleAsync(context, request);
    }

    private static async Task<IResult> Score(HttpContext context, ServedModels models)
    {
        var request = await RequestBody.ReadAsync(context.Request, ServerJsonContext.Wire.ScoreRequest);
        return await models.Resolve(request.Model).Scores.HandleScoreAsync(context, request);
    }

    private static async Task<IResult> Rerank(HttpContext context, ServedModels models)
    {
        var request = await RequestBody.ReadAsync(context.Request, ServerJsonContext.Wire.RerankRequest);
        return await models.Resolve(request.Model).Scores.HandleRerankAsync(context, request);
    }
}
