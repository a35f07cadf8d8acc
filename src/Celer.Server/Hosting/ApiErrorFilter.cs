using Celer.Server.Serving;

namespace Celer.Server.Hosting;

/// <summary>
/// Endpoint filter that turns whatever a handler throws into OpenAI's error envelope; a request
/// whose client has gone away gets no body at all.
/// </summary>
internal sealed class ApiErrorFilter(ILogger<ApiErrorFilter> logger) : IEndpointFilter
{
    public async ValueTask<object?> InvokeAsync(EndpointFilterInvocationContext context, EndpointFilterDelegate next)
    {
        try
        {
            return await next(context);
        }
        catch (OperationCanceledException) when (context.HttpContext.RequestAborted.IsCancellationRequested)
        {
            return Results.Empty;
        }
        catch (Exception e)
        {
            return OpenAIErrorResult.From(ErrorMapping.ToOpenAIException(e, logger));
        }
    }
}
