namespace Celer.Server.Serving;

/// <summary>
/// A request failed in a way the client is told about: an HTTP status plus OpenAI's error fields.
/// Thrown while a request is parsed and validated, before anything is admitted to the engine; the
/// endpoint turns it into the error envelope.
/// </summary>
public sealed class OpenAIException : Exception
{
    public OpenAIException(int statusCode, string type, string message, string? param = null, string? code = null)
        : base(message)
    {
        StatusCode = statusCode;
        Type = type;
        Param = param;
        Code = code;
    }

    public int StatusCode { get; }

    /// <summary>vLLM's error type name (<c>BadRequestError</c>, <c>NotFoundError</c>, …).</summary>
    public string Type { get; }

    /// <summary>The request field at fault, as OpenAI names it.</summary>
    public string? Param { get; }

    /// <summary>OpenAI's machine-readable code (<c>context_length_exceeded</c>), or null.</summary>
    public string? Code { get; }

    /// <summary>Seconds the client should wait before retrying (503 / 429), or null.</summary>
    public int? RetryAfterSeconds { get; init; }

    public static OpenAIException BadRequest(string message, string? param = null, string? code = null) =>
        new(StatusCodes.Status400BadRequest, "BadRequestError", message, param, code);

    public static OpenAIException ModelNotFound(string model) =>
        new(StatusCodes.Status404NotFound, "NotFoundError", $"The model `{model}` does not exist.", "model", "model_not_found");

    public static OpenAIException Unavailable(string message, int retryAfterSeconds) =>
        new(StatusCodes.Status503ServiceUnavailable, "ServiceUnavailableError", message) { RetryAfterSeconds = retryAfterSeconds };
}
