using System.Text.Json;
using Celer.ChatTemplates;
using Celer.Engine;

namespace Celer.Server.Serving;

/// <summary>
/// Maps everything a request can throw to the error the client sees. Client faults become 400s with
/// the field named; anything unexpected becomes a 500 with a generic message, its details logged
/// only, so no stack trace, path or address reaches the client (BAD_INPUT.md #27).
/// </summary>
internal static partial class ErrorMapping
{
    public const string InternalErrorMessage = "The server had an error while processing your request. Check the server log for details.";

    public static OpenAIException ToOpenAIException(Exception exception, ILogger logger) => exception switch
    {
        OpenAIException e => e,
        SamplingParamsException e => OpenAIException.BadRequest(e.Message, e.Param),
        EngineRequestException e => OpenAIException.BadRequest(e.Message, e.Param, e.Code),
        TemplateSyntaxException e => OpenAIException.BadRequest($"The chat template is invalid: {e.Message}", "chat_template"),
        TemplateRenderException e => OpenAIException.BadRequest($"The chat template failed to render the request: {e.Message}", "messages"),
        JsonException e => InvalidJson(e),
        BadHttpRequestException e => new OpenAIException(e.StatusCode, "BadRequestError", BadHttpRequestMessage(e.StatusCode)),
        EngineDeadException e => LogInternal(e, logger, "The engine stopped while the request was running."),
        _ => LogInternal(exception, logger, InternalErrorMessage),
    };

    /// <summary>
    /// A body that is not the expected JSON. The reader's own message names the .NET type it wanted;
    /// the client gets the JSON path and the line/byte position instead.
    /// </summary>
    internal static OpenAIException InvalidJson(JsonException e)
    {
        // The top-level field is the OpenAI param ("$.stop_token_ids[0]" → "stop_token_ids").
        var param = e.Path is { Length: > 2 } path && path.StartsWith("$.", StringComparison.Ordinal)
            ? path[2..].Split('.', '[')[0]
            : null;
        var where = e.LineNumber is { } line && e.BytePositionInLine is { } pos ? $" (line {line + 1}, byte {pos + 1})" : "";
        var message = param is null
            ? $"The request body is not a valid JSON object{where}."
            : $"Invalid value for '{param}'{where}: wrong type or malformed JSON.";
        return OpenAIException.BadRequest(message, param);
    }

    private static string BadHttpRequestMessage(int statusCode) => statusCode switch
    {
        StatusCodes.Status413PayloadTooLarge => "The request body is too large.",
        StatusCodes.Status408RequestTimeout => "The request body was not received in time.",
        _ => "The request is malformed.",
    };

    [LoggerMessage(Level = LogLevel.Error, Message = "Request failed with an internal error")]
    private static partial void LogInternalError(ILogger logger, Exception exception);

    private static OpenAIException LogInternal(Exception exception, ILogger logger, string message)
    {
        LogInternalError(logger, exception);
        return new OpenAIException(StatusCodes.Status500InternalServerError, "InternalServerError", message);
    }
}
