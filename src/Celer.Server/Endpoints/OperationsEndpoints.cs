using System.Reflection;
using Celer.Server.Metrics;
using Celer.Server.Protocol;
using Celer.Server.Serving;

namespace Celer.Server.Endpoints;

/// <summary>Probes and telemetry: <c>/health</c>, <c>/ping</c>, <c>/version</c>, <c>/metrics</c>.</summary>
public static class OperationsEndpoints
{
    public static IEndpointRouteBuilder MapOperations(this IEndpointRouteBuilder endpoints)
    {
        endpoints.MapGet("/health", Health);
        // SageMaker's probe; vLLM answers it like /health, on GET and POST.
        endpoints.MapMethods("/ping", [HttpMethods.Get, HttpMethods.Post], Health);
        endpoints.MapGet("/version", Version);
        endpoints.MapGet("/metrics", MetricsAsync);
        return endpoints;
    }

    /// <summary>
    /// 200 while serving; 503 once an engine loop died (any model's: the replica is then partly out of service) or
    /// shutdown began, so a load balancer stops routing here.
    /// </summary>
    private static IResult Health(ServedModels models)
    {
        if (models.AnyEngineDead)
            return OpenAIErrorResult.From(OpenAIException.Unavailable("The engine is not running.", AdmissionControl.RetryAfterSeconds));
        if (models.IsDraining)
            return OpenAIErrorResult.From(OpenAIException.Unavailable("The server is shutting down.", AdmissionControl.RetryAfterSeconds));
        return TypedResults.Ok();
    }

    private static IResult Version() =>
        TypedResults.Json(new VersionResponse(ServerVersion), ServerJsonContext.Wire.VersionResponse);

    private static async Task<IResult> MetricsAsync(PrometheusExposition exposition, CancellationToken cancellationToken) =>
        TypedResults.Text(await exposition.ExportAsync(cancellationToken), "text/plain; version=0.0.4; charset=utf-8");

    internal static string ServerVersion { get; } =
        typeof(OperationsEndpoints).Assembly.GetCustomAttribute<AssemblyInformationalVersionAttribute>()?.InformationalVersion?.Split('+')[0] ?? "0.0.0";
}
