using System.Text.Json.Nodes;
using System.Threading.Channels;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;

namespace Celer.Server.Tests.Router;

/// <summary>
/// The part of a Kubernetes API server the router's pod discovery uses, on a loopback port: <c>GET
/// /api/v1/namespaces/{ns}/pods</c> answers the pods a test sets (a list), or with <c>watch=true</c> a stream of the
/// events a test sends, one JSON object a line. It checks the bearer token and the namespace as the real one would.
/// </summary>
internal sealed class FakeKubernetesApi : IAsyncDisposable
{
    public const string Namespace = "serving";
    public const string Token = "fake-service-account-token";

    /// <summary>Sent down the event channel to close the watch's connection without ending its body: a dropped stream.</summary>
    private const string Drop = "\0drop";

    private readonly WebApplication _app;
    private readonly Channel<string?> _events = Channel.CreateUnbounded<string?>();
    private readonly Lock _lock = new();
    private JsonObject[] _pods = [];
    private int _resourceVersion = 100;
    private int _lists;
    private int _watches;
    private volatile bool _goneOnNextWatch;
    private volatile string? _labelSelector;

    private FakeKubernetesApi(WebApplication app) => _app = app;

    public Uri BaseAddress { get; private set; } = null!;

    /// <summary>Lists answered so far.</summary>
    public int Lists => Volatile.Read(ref _lists);

    /// <summary>Watches opened so far (answered 410 or not).</summary>
    public int Watches => Volatile.Read(ref _watches);

    /// <summary>The <c>labelSelector</c> of the last request.</summary>
    public string? LabelSelector => _labelSelector;

    public static async Task<FakeKubernetesApi> StartAsync()
    {
        var builder = WebApplication.CreateSlimBuilder();
        builder.Logging.ClearProviders();
        builder.WebHost.UseKestrel().UseUrls("http://127.0.0.1:0");
        var app = builder.Build();
        var api = new FakeKubernetesApi(app);
        app.MapGet("/api/v1/namespaces/{ns}/pods", api.PodsAsync);
        await app.StartAsync();
        api.BaseAddress = new Uri(app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.First().TrimEnd('/') + "/");
        return api;
    }

    /// <summary>A pod as the API server writes it (the fields discovery reads, and a few it must pass over).</summary>
    public static JsonObject Pod(string name, string ip, bool ready, string phase = "Running", bool deleting = false)
    {
        var metadata = new JsonObject { ["name"] = name, ["namespace"] = Namespace, ["labels"] = new JsonObject { ["app"] = "celer" } };
        if (deleting)
            metadata["deletionTimestamp"] = "2026-01-01T00:00:00Z";
        return new JsonObject
        {
            ["kind"] = "Pod",
            ["metadata"] = metadata,
            ["spec"] = new JsonObject { ["containers"] = new JsonArray(new JsonObject { ["name"] = "celer" }) },
            ["status"] = new JsonObject
            {
                ["phase"] = phase,
                ["podIP"] = ip,
                ["conditions"] = new JsonArray(
                    new JsonObject { ["type"] = "PodScheduled", ["status"] = "True" },
                    new JsonObject { ["type"] = "Ready", ["status"] = ready ? "True" : "False" }),
            },
        };
    }

    /// <summary>What the next list answers.</summary>
    public void SetPods(params JsonObject[] pods)
    {
        lock (_lock)
        {
            _pods = [.. pods.Select(pod => Versioned(pod))];
        }
    }

    /// <summary>An event on the open watch (or the next one), the pod given the next resourceVersion.</summary>
    public void Send(string type, JsonObject pod)
    {
        JsonObject item;
        lock (_lock)
        {
            item = Versioned(pod);
        }
        SendLine(new JsonObject { ["type"] = type, ["object"] = item }.ToJsonString());
    }

    /// <summary>A line as it is, well-formed or not.</summary>
    public void SendLine(string line) => _events.Writer.TryWrite(line);

    /// <summary>The ERROR event an API server sends when the watched version is older than it keeps.</summary>
    public void SendGone() => SendLine("""{"type": "ERROR", "object": {"kind": "Status", "apiVersion": "v1", "status": "Failure", "message": "too old resource version: 1 (150)", "reason": "Expired", "code": 410}}""");

    /// <summary>Ends the open watch's body normally, as the API server does at its timeout.</summary>
    public void EndWatch() => _events.Writer.TryWrite(null);

    /// <summary>Cuts the open watch's connection mid-body.</summary>
    public void DropWatch() => _events.Writer.TryWrite(Drop);

    /// <summary>Answers the next watch request with 410 Gone instead of a stream.</summary>
    public void GoneOnNextWatch() => _goneOnNextWatch = true;

    public async ValueTask DisposeAsync()
    {
        _events.Writer.TryComplete();
        await _app.StopAsync();
        await _app.DisposeAsync();
    }

    private JsonObject Versioned(JsonObject pod)
    {
        var copy = (JsonObject)pod.DeepClone();
        copy["metadata"]!["resourceVersion"] = (++_resourceVersion).ToString(System.Globalization.CultureInfo.InvariantCulture);
        return copy;
    }

    private async Task PodsAsync(HttpContext context)
    {
        if (context.Request.Headers.Authorization != $"Bearer {Token}")
        {
            context.Response.StatusCode = StatusCodes.Status401Unauthorized;
            return;
        }
        if ((string?)context.Request.RouteValues["ns"] != Namespace)
        {
            context.Response.StatusCode = StatusCodes.Status404NotFound;
            return;
        }
        _labelSelector = context.Request.Query["labelSelector"];
        context.Response.ContentType = "application/json";
        if (context.Request.Query["watch"] == "true")
        {
            await WatchAsync(context);
            return;
        }
        Interlocked.Increment(ref _lists);
        string body;
        lock (_lock)
        {
            body = new JsonObject
            {
                ["kind"] = "PodList",
                ["metadata"] = new JsonObject { ["resourceVersion"] = _resourceVersion.ToString(System.Globalization.CultureInfo.InvariantCulture) },
                ["items"] = new JsonArray([.. _pods.Select(pod => pod.DeepClone())]),
            }.ToJsonString();
        }
        await context.Response.WriteAsync(body, context.RequestAborted);
    }

    private async Task WatchAsync(HttpContext context)
    {
        Interlocked.Increment(ref _watches);
        if (_goneOnNextWatch)
        {
            _goneOnNextWatch = false;
            context.Response.StatusCode = StatusCodes.Status410Gone;
            await context.Response.WriteAsync("""{"kind": "Status", "status": "Failure", "reason": "Expired", "code": 410}""", context.RequestAborted);
            return;
        }
        await context.Response.StartAsync(context.RequestAborted);
        await foreach (var line in _events.Reader.ReadAllAsync(context.RequestAborted))
        {
            if (line is null)
                return;
            if (line == Drop)
            {
                context.Abort();
                return;
            }
            await context.Response.WriteAsync(line + "\n", context.RequestAborted);
            await context.Response.Body.FlushAsync(context.RequestAborted);
        }
    }
}
