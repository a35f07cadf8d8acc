using System.Text.Json.Nodes;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;

namespace Celer.Router;

/// <summary>
/// <c>celer router</c>: one OpenAI-compatible front over several Celer or vLLM servers, as vLLM's production-stack
/// router is. Kestrel takes the requests; <see cref="RequestForwarder"/> sends each to a backend of its model.
/// </summary>
public static class CelerRouter
{
    /// <summary>The POST routes forwarded: each names its model in the body (or has the one served model).</summary>
    public static readonly IReadOnlyList<string> ForwardedRoutes =
    [
        "/v1/completions", "/v1/chat/completions", "/v1/embeddings", "/tokenize", "/detokenize",
        "/pooling", "/classify", "/score", "/v1/score", "/rerank", "/v1/rerank", "/v2/rerank",
    ];

    /// <exception cref="ArgumentException">An option is out of range (<see cref="RouterOptions.Validate"/>), or Kubernetes
    /// discovery is asked for outside a pod.</exception>
    public static WebApplication Build(RouterOptions options)
    {
        options.Validate();
        var builder = WebApplication.CreateSlimBuilder();
        builder.Logging.SetMinimumLevel(options.LogLevel);
        builder.Logging.AddFilter("Microsoft.AspNetCore", options.LogLevel <= LogLevel.Debug ? options.LogLevel : LogLevel.Warning);
        builder.WebHost.UseKestrel(kestrel => kestrel.Limits.MaxRequestBodySize = options.MaxRequestBodyBytes);
        var host = options.Host.Contains(':', StringComparison.Ordinal) ? $"[{options.Host}]" : options.Host;
        builder.WebHost.UseUrls($"http://{host}:{options.Port}");
        builder.Services.AddSingleton(options);
        builder.Services.AddSingleton<BackendPool>();
        // Hosted services start in this order: the load scraper's first round needs the pool's first health checks, and
        // with Kubernetes discovery the pods' first list (which checks each backend it adds).
        builder.Services.AddHostedService(services => services.GetRequiredService<BackendPool>());
        if (options.Kubernetes is { } k8s)
        {
            // Resolved here rather than when the host starts, so a router outside a pod is refused with one line.
            var api = k8s.ApiServer ?? KubernetesApiServer.InCluster();
            var ns = k8s.Namespace ?? api.ReadNamespace();
            builder.Services.AddHostedService(services => new KubernetesPodWatcher(
                services.GetRequiredService<BackendPool>(), api, ns, k8s, services.GetRequiredService<ILogger<KubernetesPodWatcher>>()));
        }
        if (options.ScrapesLoad)
        {
            builder.Services.AddSingleton<LoadScraper>();
            builder.Services.AddHostedService(services => services.GetRequiredService<LoadScraper>());
        }
        builder.Services.AddSingleton<IRoutingLogic>(services => options.RoutingLogic switch
        {
            RoutingLogic.Session => new SessionRouting(options.SessionKey),
            RoutingLogic.LeastLoaded => new LeastLoadedRouting(),
            RoutingLogic.PrefixAware => new PrefixAwareRouting(
                new PrefixTrie(options.PrefixChunkSize, options.PrefixMaxChunks), services.GetRequiredService<BackendPool>()),
            _ => new RoundRobinRouting(),
        });
        builder.Services.AddSingleton<RouterMetrics>();
        builder.Services.AddSingleton<RequestForwarder>();

        var app = builder.Build();
        app.MapRouterEndpoints();
        return app;
    }

    public static IEndpointRouteBuilder MapRouterEndpoints(this IEndpointRouteBuilder endpoints)
    {
        foreach (var route in ForwardedRoutes)
            endpoints.MapPost(route, new RequestDelegate(ForwardAsync));
        endpoints.MapGet("/v1/models", new RequestDelegate(ListModelsAsync));
        endpoints.MapGet("/v1/models/{id}", new RequestDelegate(RetrieveModelAsync));
        endpoints.MapGet("/health", new RequestDelegate(HealthAsync));
        endpoints.MapGet("/metrics", new RequestDelegate(MetricsAsync));
        return endpoints;
    }

    /// <summary>The address Kestrel bound (the real port when <see cref="RouterOptions.Port"/> is 0).</summary>
    public static Uri GetBoundAddress(WebApplication app) =>
        new(app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.First());

    private static Task ForwardAsync(HttpContext context) =>
        context.RequestServices.GetRequiredService<RequestForwarder>().ForwardAsync(context);

    /// <summary>The union of the healthy backends' models, each id once (the first backend's card wins).</summary>
    private static Task ListModelsAsync(HttpContext context)
    {
        var pool = context.RequestServices.GetRequiredService<BackendPool>();
        var data = new JsonArray();
        var seen = new HashSet<string>(StringComparer.Ordinal);
        foreach (var card in pool.Backends.Where(b => b.IsHealthy).SelectMany(b => b.ModelCards))
        {
            if (seen.Add((string)card["id"]!))
                data.Add(card.DeepClone());
        }
        return WriteJsonAsync(context, new JsonObject { ["object"] = "list", ["data"] = data });
    }

    private static Task RetrieveModelAsync(HttpContext context)
    {
        var id = (string)context.GetRouteValue("id")!;
        var pool = context.RequestServices.GetRequiredService<BackendPool>();
        var card = pool.Backends.Where(b => b.IsHealthy).SelectMany(b => b.ModelCards).FirstOrDefault(c => (string?)c["id"] == id);
        return card is null ? OpenAIError.ModelNotFoundAsync(context, id) : WriteJsonAsync(context, card.DeepClone());
    }

    /// <summary>200 while some backend is healthy, so a load balancer in front keeps sending; else 503.</summary>
    private static Task HealthAsync(HttpContext context) =>
        context.RequestServices.GetRequiredService<BackendPool>().AnyHealthy
            ? Task.CompletedTask
            : OpenAIError.UnavailableAsync(context, "No backend is healthy.");

    private static async Task MetricsAsync(HttpContext context)
    {
        var metrics = context.RequestServices.GetRequiredService<RouterMetrics>();
        context.Response.ContentType = "text/plain; version=0.0.4; charset=utf-8";
        await context.Response.WriteAsync(await metrics.ExportAsync(context.RequestAborted), context.RequestAborted);
    }

    private static Task WriteJsonAsync(HttpContext context, JsonNode body)
    {
        context.Response.ContentType = "application/json";
        return context.Response.WriteAsync(body.ToJsonString(OpenAIError.Wire), context.RequestAborted);
    }
}
