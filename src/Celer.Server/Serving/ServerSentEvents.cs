using System.Text.Json;
using System.Text.Json.Serialization.Metadata;
using Celer.Server.Protocol;
using Microsoft.AspNetCore.Http.Features;

namespace Celer.Server.Serving;

/// <summary>
/// Server-sent events as OpenAI streams them: <c>data: {json}\n\n</c> per chunk, flushed at once,
/// closed by <c>data: [DONE]\n\n</c>. An error after the headers went out is sent as one
/// <c>data: {"error": …}</c> event before <c>[DONE]</c>, the way vLLM does.
/// </summary>
internal sealed class ServerSentEvents
{
    private static readonly byte[] DataPrefix = "data: "u8.ToArray();
    private static readonly byte[] EventEnd = "\n\n"u8.ToArray();
    private static readonly byte[] Done = "data: [DONE]\n\n"u8.ToArray();

    private readonly HttpResponse _response;
    private readonly CancellationToken _cancellationToken;

    private ServerSentEvents(HttpResponse response, CancellationToken cancellationToken)
    {
        _response = response;
        _cancellationToken = cancellationToken;
    }

    /// <summary>Sends the 200 and the event-stream headers, with response buffering off.</summary>
    public static async Task<ServerSentEvents> StartAsync(HttpContext context)
    {
        var response = context.Response;
        response.StatusCode = StatusCodes.Status200OK;
        response.ContentType = "text/event-stream; charset=utf-8";
        response.Headers.CacheControl = "no-cache";
        // Reverse proxies (nginx) buffer responses unless told not to.
        response.Headers["X-Accel-Buffering"] = "no";
        context.Features.Get<IHttpResponseBodyFeature>()?.DisableBuffering();
        await response.StartAsync(context.RequestAborted);
        // StartAsync only makes the headers final; flushing sends them now, so a client whose request is
        // still queued behind others sees it accepted (and a proxy's header timeout does not fire) before
        // the first token exists.
        await response.Body.FlushAsync(context.RequestAborted);
        return new ServerSentEvents(response, context.RequestAborted);
    }

    public Task WriteAsync<T>(T chunk, JsonTypeInfo<T> typeInfo) => WriteEventAsync(Frame(chunk, typeInfo));

    public Task WriteErrorAsync(OpenAIException error) =>
        WriteEventAsync(Frame(new ErrorResponse(new ErrorInfo(error.Message, error.Type, error.Param, error.Code)), ServerJsonContext.Wire.ErrorResponse));

    public async Task WriteDoneAsync()
    {
        await _response.Body.WriteAsync(Done, _cancellationToken);
        await _response.Body.FlushAsync(_cancellationToken);
    }

    /// <summary>One complete event: <c>data: </c>, the JSON (never containing a raw newline), a blank line.</summary>
    internal static byte[] Frame<T>(T chunk, JsonTypeInfo<T> typeInfo)
    {
        var json = JsonSerializer.SerializeToUtf8Bytes(chunk, typeInfo);
        var frame = new byte[DataPrefix.Length + json.Length + EventEnd.Length];
        DataPrefix.CopyTo(frame, 0);
        json.CopyTo(frame, DataPrefix.Length);
        EventEnd.CopyTo(frame, DataPrefix.Length + json.Length);
        return frame;
    }

    private async Task WriteEventAsync(byte[] frame)
    {
        await _response.Body.WriteAsync(frame, _cancellationToken);
        await _response.Body.FlushAsync(_cancellationToken);
    }
}
