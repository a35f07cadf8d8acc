using Celer.Engine.Execution;
using Celer.Server.Endpoints;
using Celer.Server.Hosting;
using Celer.Server.Metrics;
using Celer.Server.Protocol;
using Celer.Server.Serving;
using Celer.Server.ToolCalling;
using Microsoft.AspNetCore.Diagnostics;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;

namespace Celer.Server;

/// <summary>Builds the OpenAI-compatible HTTP server around a loaded model.</summary>
public static class CelerServer
{
    /// <summary>
    /// A ready-to-run <see cref="WebApplication"/> on Kestrel at <see cref="ServerOptions.Host"/>:<see cref="ServerOptions.Port"/>.
    /// The caller owns <paramref name="model"/> (disposes its engine after the app stops).
    /// </summary>
    /// <param name="statsRelay">The relay the engine was constructed with, if any: the request and
    /// step histograms of <c>/metrics</c> come through it (gauges and counters come from the engine's snapshot).</param>
    public static WebApplication Build(ServerOptions options, LoadedModel model, EngineStatsRelay? statsRelay = null) =>
        Build(options, [new ModelToServe(model, options, statsRelay)]);

    /// <summary>
    /// A server of several models, each on its own engine, routed by a request's <c>model</c>. The per-model settings
    /// come from each <see cref="ModelToServe.Options"/>, the server's (address, API key, CORS, limits, logging, metrics
    /// prefix) from <paramref name="options"/>. The caller owns the models.
    /// </summary>
    /// <exception cref="ArgumentException">No model, or a served name given to two models.</exception>
    public static WebApplication Build(ServerOptions options, IReadOnlyList<ModelToServe> models)
    {
        if (models.Count == 0)
            throw new ArgumentException("A server needs at least one model.", nameof(models));
        var servingModels = models.Select(m => new ServingModel(m.Model, m.Options)).ToList();
        ServedModels.CheckNames(servingModels);
        var builder = WebApplication.CreateSlimBuilder();
        ConfigureLogging(builder.Logging, options);
        builder.WebHost.UseKestrel(kestrel =>
        {
            kestrel.Limits.MaxRequestBodySize = options.MaxRequestBodyBytes;
            kestrel.Limits.MaxRequestHeadersTotalSize = options.MaxRequestHeadersTotalBytes;
            kestrel.AddServerHeader = false;
        });
        builder.WebHost.UseUrls(FormatUrl(options.Host, options.Port));
        // On SIGTERM the server drains (RequestDrain), then stops Kestrel: in-flight requests get this long in all.
        builder.Services.Configure<HostOptions>(host => host.ShutdownTimeout = options.ShutdownTimeout);
        builder.Services.ConfigureHttpJsonOptions(json => json.SerializerOptions.TypeInfoResolverChain.Insert(0, ServerJsonContext.Wire));
        builder.Services.AddCors(cors => cors.AddDefaultPolicy(policy => ConfigureCors(policy, options)));

        var exposition = new PrometheusExposition(options.MetricsPrefix);
        var tokenBucketsMaxLen = models.Max(m => m.Model.MaxModelLen);
        var parts = new List<(ServingModel Model, ServerOptions Options, ChatParsers Parsers, AdmissionControl Admission)>(models.Count);
        for (var i = 0; i < models.Count; i++)
        {
            var (model, modelOptions, statsRelay) = models[i];
            var servingModel = servingModels[i];
            // --reasoning-parser and --tool-call-parser: a name the server does not know, or a model without the parser's markers, fails here.
            var parsers = ChatParsers.Create(modelOptions, servingModel.Tokenizer);
            var metrics = new EngineMetrics(model.Engine, servingModel.PrimaryName, model.MaxModelLen, exposition, tokenBucketsMaxLen, hostKvTier: model.NumHostKvBlocks > 0);
            metrics.PublishCacheConfig(model.BlockSize, model.NumKvBlocks, model.EnablePrefixCaching);
            statsRelay?.Attach(metrics);
            parts.Add((servingModel, modelOptions, parsers, new AdmissionControl(modelOptions.MaxPendingRequests, () => model.Engine.IsDead)));
            if (!options.DisableLogStats)
            {
                var name = models.Count > 1 ? servingModel.PrimaryName : null;
                builder.Services.AddHostedService(services => new StatsLogger(model.Engine, options.StatsLogInterval, services.GetRequiredService<ILogger<StatsLogger>>(), name));
            }
        }

        builder.Services.AddSingleton(options);
        builder.Services.AddSingleton(exposition);
        builder.Services.AddSingleton(SleepPolicy.Attach(models.Select(m => m.Model.Engine)));
        builder.Services.AddSingleton(services => new ServedModels(
            [.. parts.Select(p => new ServedModel(p.Model, p.Admission, p.Parsers, p.Options, services.GetRequiredService<ILoggerFactory>()))]));
        builder.Services.AddHostedService<RequestDrain>();

        var app = builder.Build();
        app.Lifetime.ApplicationStopping.Register(app.Services.GetRequiredService<ServedModels>().BeginDraining);

        app.UseStatusCodePages(WriteStatusCodeEnvelope);
        app.UseCors();
        if (!string.IsNullOrEmpty(options.ApiKey))
            app.Use(new ApiKeyAuthentication(options.ApiKey).InvokeAsync);

        app.MapOpenAIApi();
        app.MapTokenizeApi();
        app.MapPoolingApi();
        app.MapOperations();
        app.MapSleepApi();
        return app;
    }

    /// <summary>
    /// The least level written is <see cref="ServerOptions.LogLevel"/>, except ASP.NET's own categories, which write
    /// about ten lines per request at Information (request start and end, routing, results): those stay at Warning
    /// unless the operator asks for Debug or more. Celer's per-request line is <c>--enable-log-requests</c>.
    /// </summary>
    internal static void ConfigureLogging(ILoggingBuilder logging, ServerOptions options)
    {
        logging.SetMinimumLevel(options.LogLevel);
        logging.AddFilter("Microsoft.AspNetCore", options.LogLevel <= LogLevel.Debug ? options.LogLevel : LogLevel.Warning);
    }

    /// <summary>The address the server listens on once started (the real port when <see cref="ServerOptions.Port"/> is 0).</summary>
    public static Uri GetBoundAddress(WebApplication app)
    {
        var addresses = app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses;
        return new Uri(addresses.First());
    }

    internal static string FormatUrl(string host, int port) =>
        host.Contains(':') && !host.StartsWith('[') ? $"http://[{host}]:{port}" : $"http://{host}:{port}";

    private static void ConfigureCors(Microsoft.AspNetCore.Cors.Infrastructure.CorsPolicyBuilder policy, ServerOptions options)
    {
        if (options.AllowedOrigins.Contains("*"))
            policy.AllowAnyOrigin();
        else
            policy.WithOrigins([.. options.AllowedOrigins]);
        if (options.AllowedMethods.Contains("*"))
            policy.AllowAnyMethod();
        else
            policy.WithMethods([.. options.AllowedMethods]);
        if (options.AllowedHeaders.Contains("*"))
            policy.AllowAnyHeader();
        else
            policy.WithHeaders([.. options.AllowedHeaders]);
        // The CORS spec forbids credentials with a wildcard origin; ASP.NET throws on the combination.
        if (options.AllowCredentials && !options.AllowedOrigins.Contains("*"))
            policy.AllowCredentials();
    }

    /// <summary>Bodiless error statuses from routing (404 unknown route, 405 wrong method) get OpenAI's envelope too.</summary>
    private static Task WriteStatusCodeEnvelope(StatusCodeContext context)
    {
        var status = context.HttpContext.Response.StatusCode;
        var (type, message) = status switch
        {
            StatusCodes.Status404NotFound => ("NotFoundError", "Not Found: no such route."),
            StatusCodes.Status405MethodNotAllowed => ("BadRequestError", "Method Not Allowed for this route."),
            _ => ("BadRequestError", $"The request failed with HTTP status {status}."),
        };
        var error = new ErrorResponse(new ErrorInfo(message, type, null, null));
        return new OpenAIErrorResult(status, error).ExecuteAsync(context.HttpContext);
    }
}

/// <summary>One model of a server: the loaded engine, its per-model settings and the relay its engine reports stats through.</summary>
/// <param name="Model">The loaded model; the caller disposes it after the server stops.</param>
/// <param name="Options">The model's own settings (<see cref="ServerOptions.ServedModelNames"/>, chat template, generation
/// config, parsers, <see cref="ServerOptions.MaxLogprobs"/>, <see cref="ServerOptions.MaxPendingRequests"/> of its own queue);
/// the server-wide ones are read from the server's options.</param>
/// <param name="StatsRelay">The relay the engine was constructed with, if any (see <see cref="CelerServer.Build(ServerOptions, LoadedModel, EngineStatsRelay?)"/>).</param>
public sealed record ModelToServe(LoadedModel Model, ServerOptions Options, EngineStatsRelay? StatsRelay = null);
