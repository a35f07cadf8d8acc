using System.Buffers;
using System.Text.Json;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Http.Features;
using Microsoft.Extensions.Logging;

namespace Celer.Router;

/// <summary>
/// Forwards one OpenAI request: reads the body once to find its <c>model</c>, picks a healthy backend serving it, sends
/// the body and the client's headers there, and copies the answer back as it arrives (each read flushed, so server-sent
/// events pass through unbuffered). A backend that cannot be reached is ejected and the request tried once more on
/// another; once the backend has answered, nothing is retried. The client's disconnect cancels the upstream request.
/// </summary>
public sealed partial class RequestForwarder(BackendPool pool, IRoutingLogic routing, ILogger<RequestForwarder> logger) : IDisposable
{
    public const string RequestIdHeader = "X-Request-Id";

    /// <summary>Headers of one connection, not of the request (RFC 9110 §7.6.1), plus those the client stack sets itself.</summary>
    private static readonly HashSet<string> s_notForwarded = new(StringComparer.OrdinalIgnoreCase)
    {
        "Connection", "Keep-Alive", "Proxy-Connection", "Proxy-Authenticate", "Proxy-Authorization", "TE", "Trailer",
        "Transfer-Encoding", "Upgrade", "Host", "Content-Length", "Expect",
    };

    // No timeout: a long generation is ended by its client disconnecting, not by the router.
    private readonly HttpClient _upstream = new(new SocketsHttpHandler
    {
        UseCookies = false,
        AllowAutoRedirect = false,
        ConnectTimeout = TimeSpan.FromSeconds(5),
        // An answer left unfinished (its client left) closes its connection, so the backend aborts the request, instead
        // of being read to its end to reuse the connection.
        MaxResponseDrainSize = 0,
        // Re-resolve DNS now and then (a Kubernetes service's pods change).
        PooledConnectionLifetime = TimeSpan.FromMinutes(2),
    }) { Timeout = Timeout.InfiniteTimeSpan };

    public async Task ForwardAsync(HttpContext context)
    {
        var aborted = context.RequestAborted;
        byte[] body;
        using (var buffer = new MemoryStream())
        {
            await context.Request.Body.CopyToAsync(buffer, aborted);
            body = buffer.ToArray();
        }

        string? model;
        try
        {
            using var json = JsonDocument.Parse(body);
            if (json.RootElement.ValueKind != JsonValueKind.Object)
            {
                await OpenAIError.BadRequestAsync(context, "The request body must be a JSON object.");
                return;
            }
            model = null;
            if (json.RootElement.TryGetProperty("model", out var field) && field.ValueKind != JsonValueKind.Null)
            {
                if (field.ValueKind != JsonValueKind.String)
                {
                    await OpenAIError.BadRequestAsync(context, "`model` must be a string.", "model");
                    return;
                }
                model = field.GetString();
            }
        }
        catch (JsonException)
        {
            await OpenAIError.BadRequestAsync(context, "The request body is not valid JSON.");
            return;
        }

        if (model is null)
        {
            // vLLM's server takes a request without a model for its (only) model; so does the router when there is one.
            var served = pool.HealthyModels();
            if (served.Count != 1)
            {
                await (served.Count == 0
                    ? OpenAIError.UnavailableAsync(context, "No backend is healthy.")
                    : OpenAIError.BadRequestAsync(context, $"The router serves several models ({string.Join(", ", served)}); name one in `model`.", "model"));
                return;
            }
            model = served[0];
        }
        if (!pool.AnyServes(model))
        {
            await OpenAIError.ModelNotFoundAsync(context, model);
            return;
        }

        var candidates = pool.HealthyFor(model);
        if (candidates.Count == 0)
        {
            await OpenAIError.UnavailableAsync(context, $"No healthy backend serves the model `{model}`.");
            return;
        }

        var requestId = context.Request.Headers[RequestIdHeader].ToString();
        if (requestId.Length == 0)
            requestId = Guid.NewGuid().ToString("N");
        var backend = routing.Pick(candidates, model, context.Request);
        HttpResponseMessage? response = null;
        for (var attempt = 0; response is null; attempt++)
        {
            using var upstreamRequest = CreateUpstreamRequest(context.Request, backend, body, requestId);
            try
            {
                response = await _upstream.SendAsync(upstreamRequest, HttpCompletionOption.ResponseHeadersRead, aborted);
            }
            catch (HttpRequestException e) when (!aborted.IsCancellationRequested)
            {
                // Nothing came back from this backend, so nothing reached the client: safe to try another.
                pool.Eject(backend, e);
                var failed = backend;
                var others = pool.HealthyFor(model).Where(b => b != failed).ToList();
                if (attempt == 1 || others.Count == 0)
                {
                    LogUnreachable(model, e.Message);
                    await OpenAIError.UnavailableAsync(context, $"No backend serving the model `{model}` could be reached.");
                    return;
                }
                backend = routing.Pick(others, model, context.Request);
            }
        }

        using (response)
            await CopyResponseAsync(context, response, requestId);
    }

    public void Dispose() => _upstream.Dispose();

    private static HttpRequestMessage CreateUpstreamRequest(HttpRequest request, Backend backend, byte[] body, string requestId)
    {
        var path = request.Path.Value!.TrimStart('/') + request.QueryString.Value;
        var message = new HttpRequestMessage(HttpMethod.Post, new Uri(backend.Url, path)) { Content = new ByteArrayContent(body) };
        foreach (var (name, values) in request.Headers)
        {
            if (s_notForwarded.Contains(name) || name.Equals(RequestIdHeader, StringComparison.OrdinalIgnoreCase))
                continue;
            // Content-Type and its kin belong to the content; Authorization and the rest to the request.
            if (!message.Headers.TryAddWithoutValidation(name, (IEnumerable<string?>)values))
                message.Content.Headers.TryAddWithoutValidation(name, (IEnumerable<string?>)values);
        }
        message.Headers.TryAddWithoutValidation(RequestIdHeader, requestId);
        return message;
    }

    private async Task CopyResponseAsync(HttpContext context, HttpResponseMessage response, string requestId)
    {
        var aborted = context.RequestAborted;
        context.Response.StatusCode = (int)response.StatusCode;
        foreach (var (name, values) in response.Headers.Concat(response.Content.Headers))
        {
            if (!s_notForwarded.Contains(name) || name.Equals("Content-Length", StringComparison.OrdinalIgnoreCase))
                context.Response.Headers[name] = values.ToArray();
        }
        context.Response.Headers[RequestIdHeader] = requestId;
        context.Features.Get<IHttpResponseBodyFeature>()?.DisableBuffering();

        var buffer = ArrayPool<byte>.Shared.Rent(16 * 1024);
        try
        {
            await using var upstream = await response.Content.ReadAsStreamAsync(aborted);
            await context.Response.StartAsync(aborted);
            int read;
            while ((read = await upstream.ReadAsync(buffer, aborted)) > 0)
            {
                await context.Response.Body.WriteAsync(buffer.AsMemory(0, read), aborted);
                await context.Response.Body.FlushAsync(aborted);
            }
        }
        catch (OperationCanceledException) when (aborted.IsCancellationRequested)
        {
            // The client left: disposing the response closes the upstream connection, which cancels the request there.
        }
        catch (Exception e) when (e is IOException or HttpRequestException)
        {
            // The backend failed mid-answer. The client has the status and part of the body; cutting the connection is the
            // only way left to tell it the answer is incomplete (no retry: tokens already went out).
            LogBrokenStream(e.Message);
            context.Abort();
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(buffer);
        }
    }

    [LoggerMessage(Level = LogLevel.Warning, Message = "No backend of model {Model} could be reached: {Reason}")]
    private partial void LogUnreachable(string model, string reason);

    [LoggerMessage(Level = LogLevel.Warning, Message = "A backend's response broke off mid-stream: {Reason}")]
    private partial void LogBrokenStream(string reason);
}
