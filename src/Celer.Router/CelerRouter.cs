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
        // ASP.NET Core's per-request lines are noise below Warning unless debugging; above Warning (None included) the
        // router's own level holds for it too.
        builder.Logging.AddFilter("Microsoft.AspNetCore", options.LogLevel is > LogLevel.Debug and < LogLevel.Warning ? LogLevel.Warning : options.LogLevel);
        // Kestrel warns once per connection refused over MaxConcurrentConnections: under the flood that limit is for, those
        // lines would themselves load the router. Kestrel's meter counts them (kestrel.rejected_connections).
        builder.Logging.AddFilter("Microsoft.AspNetCore.Server.Kestrel.Connections", options.LogLevel is <= LogLevel.Debug or > LogLevel.Error ? options.LogLevel : LogLevel.Error);
        builder.WebHost.UseKestrel(kestrel =>
        {
            kestrel.Limits.MaxRequestBodySize = options.MaxRequestBodyBytes;
            // The bound on requests (--max-pending-requests) is what keeps the router up under overload; this one bounds
            // the connections carrying none: clients' idle keep-alive pools, and connections opened faster than they are
            // answered. A connection over it is closed unanswered, so it is set above the requests' bound, which answers
            // a 503 clients retry: each admitted request holds a connection, and as many again may idle (a few KB each,
            // no buffers while idle). With a backend connection per admitted request that is at most three sockets per
            // slot, 12,288 at the default, inside the usual open-file limits (.NET raises the soft limit to the hard one),
            // so accepting clients can never starve the router of sockets to its backends.
            // MaxConcurrentUpgradedConnections is left alone: the router serves no WebSocket and forwards no Upgrade
            // header, so none of its connections is ever upgraded.
            kestrel.Limits.MaxConcurrentConnections = 2L * options.MaxPendingRequests;
        });
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
        builder.Services.AddSingleton(new PendingRequestLimit(options.MaxPendingRequests));
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
