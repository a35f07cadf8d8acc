namespace Celer.Server.Serving;

/// <summary>
/// A streamed response as a minimal-API result: the SSE body is produced by <paramref name="writeAsync"/>
/// once the endpoint returns, and the admission lease is held until the last byte.
/// </summary>
internal sealed class StreamingResult(Func<HttpContext, Task> writeAsync, IDisposable lease) : IResult, IStatusCodeHttpResult
{
    public int? StatusCode => StatusCodes.Status200OK;

    public async Task ExecuteAsync(HttpContext httpContext)
    {
        using (lease)
            await writeAsync(httpContext);
    }
}
