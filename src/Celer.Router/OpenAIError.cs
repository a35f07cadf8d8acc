using System.Text.Encodings.Web;
using System.Text.Json;
using System.Text.Json.Nodes;
using Microsoft.AspNetCore.Http;

namespace Celer.Router;

/// <summary>Writes OpenAI's error envelope with vLLM's type names, as Celer's own server does.</summary>
internal static class OpenAIError
{
    public static Task WriteAsync(HttpContext context, int status, string type, string message, string? param = null, string? code = null, int? retryAfterSeconds = null)
    {
        context.Response.StatusCode = status;
        if (retryAfterSeconds is { } seconds)
            context.Response.Headers.RetryAfter = seconds.ToString(System.Globalization.CultureInfo.InvariantCulture);
        var body = new JsonObject
        {
            ["error"] = new JsonObject { ["message"] = message, ["type"] = type, ["param"] = param, ["code"] = code },
        };
        context.Response.ContentType = "application/json";
        return context.Response.WriteAsync(body.ToJsonString(Wire), context.RequestAborted);
    }

    /// <summary>The server's escaping (backticks and non-ASCII text as they are), so the router's errors read the same.</summary>
    public static JsonSerializerOptions Wire { get; } = new() { Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping };

    /// <summary>Celer's (and vLLM's) answer for a model no backend serves.</summary>
    public static Task ModelNotFoundAsync(HttpContext context, string model) =>
        WriteAsync(context, StatusCodes.Status404NotFound, "NotFoundError", $"The model `{model}` does not exist.", "model", "model_not_found");

    public static Task BadRequestAsync(HttpContext context, string message, string? param = null) =>
        WriteAsync(context, StatusCodes.Status400BadRequest, "BadRequestError", message, param);

    public static Task UnavailableAsync(HttpContext context, string message) =>
        WriteAsync(context, StatusCodes.Status503ServiceUnavailable, "ServiceUnavailableError", message, retryAfterSeconds: 1);
}
