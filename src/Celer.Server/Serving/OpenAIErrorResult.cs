using System.Globalization;
using System.Text.Json;
using Celer.Server.Protocol;

namespace Celer.Server.Serving;

/// <summary>An <see cref="IResult"/> that writes OpenAI's error envelope with its status (and <c>Retry-After</c>).</summary>
public sealed class OpenAIErrorResult : IResult, IStatusCodeHttpResult, IValueHttpResult, IValueHttpResult<ErrorResponse>
{
    public OpenAIErrorResult(int statusCode, ErrorResponse value, int? retryAfterSeconds = null)
    {
        StatusCode = statusCode;
        Value = value;
        RetryAfterSeconds = retryAfterSeconds;
    }

    public int StatusCode { get; }

    int? IStatusCodeHttpResult.StatusCode => StatusCode;

    public ErrorResponse Value { get; }

    object? IValueHttpResult.Value => Value;

    public int? RetryAfterSeconds { get; }

    public static OpenAIErrorResult From(OpenAIException e) =>
        new(e.StatusCode, new ErrorResponse(new ErrorInfo(e.Message, e.Type, e.Param, e.Code)), e.RetryAfterSeconds);

    public async Task ExecuteAsync(HttpContext httpContext)
    {
        var response = httpContext.Response;
        response.StatusCode = StatusCode;
        if (RetryAfterSeconds is { } seconds)
            response.Headers.RetryAfter = seconds.ToString(CultureInfo.InvariantCulture);
        response.ContentType = "application/json";
        await JsonSerializer.SerializeAsync(response.Body, Value, ServerJsonContext.Wire.ErrorResponse, httpContext.RequestAborted);
    }
}
