using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;

namespace Celer.Server.Tests.Router;

/// <summary>
/// A backend whose load and failures a test sets, which a real server's cannot be: a Kestrel app on a loopback port
/// answering <c>/health</c>, <c>/v1/models</c> (one model), <c>/metrics</c> with the text a test gives, and
/// <c>/v1/completions</c> with the status a test gives, optionally held until released (before its answer, or after the
/// answer's first bytes).
/// </summary>
internal sealed class FakeBackend : IAsyncDisposable
{
    public const string Model = "fake-model";

    private readonly WebApplication _app;
    private volatile string _metricsText = "";
    private volatile int _completionStatus = StatusCodes.Status200OK;
    private volatile TaskCompletionSource? _hold;
    private volatile bool _holdMidAnswer;
    private int _completions;
    private int _waiting;
    private int _disposed;

    private FakeBackend(WebApplication app) => _app = app;

    /// <summary>Where it listens, once started.</summary>
    public Uri BaseAddress { get; private set; } = null!;

    /// <summary>What <c>GET /metrics</c> answers (Prometheus text).</summary>
    public string MetricsText { get => _metricsText; set => _metricsText = value; }

    /// <summary>The status <c>POST /v1/completions</c> answers.</summary>
    public int CompletionStatus { get => _completionStatus; set => _completionStatus = value; }

    /// <summary>Completions received so far (answered or held).</summary>
    public int Completions => Volatile.Read(ref _completions);

    /// <summary>Completions being held now.</summary>
    public int Held => Volatile.Read(ref _waiting);

    /// <summary>Makes completions wait until <see cref="Release"/> before answering.</summary>
    public void Hold()
    {
        _holdMidAnswer = false;
        _hold = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
    }

    /// <summary>Makes completions send their status and the answer's first bytes, then wait until <see cref="Release"/>, as a stream does between tokens.</summary>
    public void HoldMidAnswer()
    {
        _holdMidAnswer = true;
        _hold = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
    }

    public void Release() => Interlocked.Exchange(ref _hold, null)?.TrySetResult();

    /// <summary>vLLM's three load gauges for <see cref="Model"/> on one engine, as Celer writes them.</summary>
    public static string LoadMetrics(double waiting, double running, double kvUsage) => $$"""
        # HELP vllm:num_requests_running Number of requests in model execution batches.
        # TYPE vllm:num_requests_running gauge
        vllm:num_requests_running{model_name="{{Model}}",engine="0"} {{Invariant(running)}}
        # HELP vllm:num_requests_waiting Number of requests waiting to be processed.
        # TYPE vllm:num_requests_waiting gauge
        vllm:num_requests_waiting{model_name="{{Model}}",engine="0"} {{Invariant(waiting)}}
        # HELP vllm:kv_cache_usage_perc KV-cache usage. 1 means 100 percent usage.
        # TYPE vllm:kv_cache_usage_perc gauge
        vllm:kv_cache_usage_perc{model_name="{{Model}}",engine="0"} {{Invariant(kvUsage)}}

        """;

    /// <param name="port">0: an ephemeral port.</param>
    /// <param name="ip">A loopback address: several backends on one port stand for pods, each with its own IP.</param>
    public static async Task<FakeBackend> StartAsync(int port = 0, string ip = "127.0.0.1")
    {
        var builder = WebApplication.CreateSlimBuilder();
        builder.Logging.ClearProviders();
        builder.WebHost.UseKestrel().UseUrls($"http://{ip}:{port}");
        var app = builder.Build();
        var backend = new FakeBackend(app);
        app.MapGet("/health", context => Task.CompletedTask);
        app.MapGet("/v1/models", context => WriteAsync(context, "application/json",
            $$"""{"object": "list", "data": [{"id": "{{Model}}", "object": "model", "created": 0, "owned_by": "fake"}]}"""));
        app.MapGet("/metrics", context => WriteAsync(context, "text/plain; version=0.0.4", backend.MetricsText));
        app.MapPost("/v1/completions", backend.CompleteAsync);
        await app.StartAsync();
        backend.BaseAddress = new Uri(app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.First().TrimEnd('/') + "/");
        return backend;
    }

    /// <summary>Stops it (a test may stop it before its end; later calls do nothing).</summary>
    public async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) == 1)
            return;
        Release();
        await _app.StopAsync();
        await _app.DisposeAsync();
    }

    private async Task CompleteAsync(HttpContext context)
    {
        Interlocked.Increment(ref _completions);
        var hold = _hold;
        if (hold is not null && _holdMidAnswer)
        {
            context.Response.StatusCode = CompletionStatus;
            context.Response.ContentType = "application/json";
            await context.Response.WriteAsync(" ", context.RequestAborted);
            await context.Response.Body.FlushAsync(context.RequestAborted);
        }
        if (hold is not null)
        {
            Interlocked.Increment(ref _waiting);
            try
            {
                await hold.Task.WaitAsync(context.RequestAborted);
            }
            finally
            {
                Interlocked.Decrement(ref _waiting);
            }
        }
        if (!context.Response.HasStarted)
            context.Response.StatusCode = CompletionStatus;
        await WriteAsync(context, "application/json", CompletionStatus == StatusCodes.Status200OK
            ? $$"""{"id": "cmpl-fake", "object": "text_completion", "model": "{{Model}}", "choices": [{"index": 0, "text": "ok", "finish_reason": "length"}]}"""
            : """{"error": {"message": "fake failure", "type": "InternalServerError", "param": null, "code": null}}""");
    }

    private static Task WriteAsync(HttpContext context, string contentType, string body)
    {
        if (!context.Response.HasStarted)
            context.Response.ContentType = contentType;
        return context.Response.WriteAsync(body, context.RequestAborted);
    }

    private static string Invariant(double value) => value.ToString(System.Globalization.CultureInfo.InvariantCulture);
}
