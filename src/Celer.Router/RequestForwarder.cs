using System.Buffers;
using System.Diagnostics;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Http.Features;
using Microsoft.Extensions.Logging;

namespace Celer.Router;

/// <summary>
/// Forwards one OpenAI request, while a slot of the router-wide <see cref="PendingRequestLimit"/> is free (else 503 at
/// once): reads the body once to find its <c>model</c>, picks a backend serving it (healthy, its
/// circuit not open), sends the body and the client's headers there, and copies the answer back as it arrives (each read
/// flushed, so server-sent events pass through unbuffered). A backend that cannot be reached is ejected and the request
/// tried once more on another; once the backend has answered, nothing is retried. The client's disconnect cancels the
/// upstream request. Each answer (or failure to connect) is counted in the metrics and the backend's circuit breaker.
/// </summary>
public sealed partial class RequestForwarder(
    BackendPool pool, IRoutingLogic routing, RouterMetrics metrics, PendingRequestLimit limit, ILogger<RequestForwarder> logger) : IDisposable
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
        // MaxConnectionsPerServer stays unlimited: a request holds at most one backend connection, and only while it
        // holds a slot of the PendingRequestLimit, so the connections to each backend are already bounded by
        // --max-pending-requests. A bound here would instead queue requests inside the handler, unseen by the backend's
        // own queue and its vllm:num_requests_waiting (which least-loaded routing reads), with no limit on the wait: a
        // backend streaming long answers on all its connections would stall every other request sent to it.
    }) { Timeout = Timeout.InfiniteTimeSpan };

    /// <summary>Forwards the request if a slot of the router-wide bound is free; refuses it with 503 at once otherwise.</summary>
    public async Task ForwardAsync(HttpContext context)
    {
        // Before the body is read, so the bodies held are bounded too (a refused one is never read).
        if (!limit.TryEnter())
        {
            metrics.CountRejected();
            await OpenAIError.UnavailableAsync(context,
                $"The router is overloaded: all of its {limit.MaxPendingRequests} request slots (--max-pending-requests) are in use. Retry later.");
            return;
        }
        try
        {
            await ForwardAdmittedAsync(context);
        }
        finally
        {
            // Also when the client left (the copy or the send was cancelled) or anything threw: the slot is the request's alone.
            limit.Exit();
        }
    }

    private async Task ForwardAdmittedAsync(HttpContext context)
    {
        var route = await RouteRequest.ReadAsync(context, pool);
        if (route is null)
            return;
        var model = route.Model;
        metrics.CountIncoming(model);
        var candidates = pool.RoutableFor(model);
        if (candidates.Count == 0)
        {
            await OpenAIError.UnavailableAsync(context, pool.HealthyFor(model).Count == 0
                ? $"No healthy backend serves the model `{model}`."
                : $"Every healthy backend serving the model `{model}` has its circuit breaker open.");
            return;
        }

        var requestId = context.Request.Headers[RequestIdHeader].ToString();
        if (requestId.Length == 0)
            requestId = Guid.NewGuid().ToString("N");
        for (var attempt = 0; ; attempt++)
        {
            var (backend, permit) = Admit(candidates, route);
            if (backend is null)
            {
                await OpenAIError.UnavailableAsync(context, $"No backend serving the model `{model}` is available.");
                return;
            }
            var failure = await SendToAsync(context, route, backend, permit, requestId);
            if (failure is null)
                return;

            // Nothing came back from this backend, so nothing reached the client: safe to try another.
            candidates = [.. pool.RoutableFor(model).Where(b => b != backend)];
            if (attempt == 1 || candidates.Count == 0)
            {
                LogUnreachable(model, failure.Message);
                await OpenAIError.UnavailableAsync(context, $"No backend serving the model `{model}` could be reached.");
                return;
            }
            metrics.CountRetry(backend, model);
        }
    }

    public void Dispose() => _upstream.Dispose();

    /// <summary>
    /// The routing logic's choice among the candidates whose circuit still lets a request through: another request may
    /// have taken a half-open circuit's one trial since the candidates were listed. Null when none is left.
    /// </summary>
    private (Backend? Backend, CircuitPermit Permit) Admit(IReadOnlyList<Backend> candidates, RouteRequest route)
    {
        while (candidates.Count > 0)
        {
            var backend = routing.Pick(candidates, route);
            var permit = backend.Breaker.TryAcquire();
            if (permit != CircuitPermit.Denied)
                return (backend, permit);
            candidates = [.. candidates.Where(b => b != backend)];
        }
        return (null, CircuitPermit.Denied);
    }

    /// <summary>Sends the request to one backend and copies its answer to the client.</summary>
    /// <returns>Null once the client has the backend's answer (or left); the error when the backend could not be reached.</returns>
    private async Task<HttpRequestException?> SendToAsync(HttpContext context, RouteRequest route, Backend backend, CircuitPermit permit, string requestId)
    {
        var aborted = context.RequestAborted;
        using var inFlight = backend.Load.Begin();
        using var upstreamRequest = CreateUpstreamRequest(route, backend, requestId);
        var sent = Stopwatch.GetTimestamp();
        var stats = backend.Stats.Begin();
        var copied = false;
        try
        {
            HttpResponseMessage response;
            try
            {
                response = await _upstream.SendAsync(upstreamRequest, HttpCompletionOption.ResponseHeadersRead, aborted);
            }
            catch (HttpRequestException e) when (!aborted.IsCancellationRequested)
            {
                metrics.CountUnreachable(backend, route.Model);
                metrics.CountError(backend, route.Model, e);
                metrics.ObserveLatency(backend, route.Model, success: false, Stopwatch.GetElapsedTime(sent));
                RecordOutcome(backend, permit, success: false);
                pool.Eject(backend, e);
                return e;
            }
            catch
            {
                // The client left before the backend answered: that says nothing about the backend.
                backend.Breaker.Release(permit);
                throw;
            }

            using (response)
            {
                var status = (int)response.StatusCode;
                metrics.CountRequest(backend, route.Model, status);
                // A 4xx is the request's fault; the backend worked.
                RecordOutcome(backend, permit, success: status < 500);
                var end = await CopyResponseAsync(context, response, requestId, () =>
                {
                    metrics.ObserveTimeToFirstByte(backend, route.Model, Stopwatch.GetElapsedTime(sent));
                    backend.Stats.FirstByte(stats);
                });
                copied = end.Copied;
                if (end.BackendFailure is { } failure)
                    metrics.CountError(backend, route.Model, failure);
                // An answer whose client left has no end, so no end-to-end latency.
                if (end.Copied || end.BackendFailure is not null)
                    metrics.ObserveLatency(backend, route.Model, success: end.Copied && status < 400, Stopwatch.GetElapsedTime(sent));
            }
            return null;
        }
        finally
        {
            backend.Stats.End(stats, copied);
        }
    }

    private void RecordOutcome(Backend backend, CircuitPermit permit, bool success)
    {
        switch (backend.Breaker.Record(permit, success))
        {
            case CircuitState.Open:
                metrics.CountCircuitOpened(backend);
                LogCircuitOpened(backend.Url, backend.Breaker.Cooldown.TotalSeconds);
                break;
            case CircuitState.Closed:
                LogCircuitClosed(backend.Url);
                break;
        }
    }

    private static HttpRequestMessage CreateUpstreamRequest(RouteRequest route, Backend backend, string requestId)
    {
        var request = route.Http;
        var path = request.Path.Value!.TrimStart('/') + request.QueryString.Value;
        var message = new HttpRequestMessage(HttpMethod.Post, new Uri(backend.Url, path)) { Content = new ReadOnlyMemoryContent(route.Body) };
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

    /// <summary>How copying an answer ended: copied to its end, or not (its client left, or the backend broke off: the failure).</summary>
    private readonly record struct AnswerEnd(bool Copied, Exception? BackendFailure);

    /// <param name="firstByte">Called when the first byte of the body arrives (or the body ends empty).</param>
    private async Task<AnswerEnd> CopyResponseAsync(HttpContext context, HttpResponseMessage response, string requestId, Action firstByte)
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
            var read = await upstream.ReadAsync(buffer, aborted);
            firstByte();
            while (read > 0)
            {
                await context.Response.Body.WriteAsync(buffer.AsMemory(0, read), aborted);
                await context.Response.Body.FlushAsync(aborted);
                read = await upstream.ReadAsync(buffer, aborted);
            }
            return new AnswerEnd(Copied: true, BackendFailure: null);
        }
        catch (OperationCanceledException) when (aborted.IsCancellationRequested)
        {
            // The client left: disposing the response closes the upstream connection, which cancels the request there.
            return new AnswerEnd(Copied: false, BackendFailure: null);
        }
        catch (Exception e) when ((e is IOException or HttpRequestException) && !aborted.IsCancellationRequested)
        {
            // The backend failed mid-answer. The client has the status and part of the body; cutting the connection is the
            // only way left to tell it the answer is incomplete (no retry: tokens already went out).
            LogBrokenStream(e.Message);
            context.Abort();
            return new AnswerEnd(Copied: false, BackendFailure: e);
        }
        catch (Exception e) when (e is IOException or HttpRequestException)
        {
            // The client left while a read or a write was failing: its leaving decides, as above.
            return new AnswerEnd(Copied: false, BackendFailure: null);
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

    [LoggerMessage(Level = LogLevel.Warning, Message = "Backend {Backend}'s circuit breaker opened: no requests for {CooldownSeconds} s, then one trial")]
    private partial void LogCircuitOpened(Uri backend, double cooldownSeconds);

    [LoggerMessage(Level = LogLevel.Information, Message = "Backend {Backend}'s circuit breaker closed: its trial request succeeded")]
    private partial void LogCircuitClosed(Uri backend);
}
