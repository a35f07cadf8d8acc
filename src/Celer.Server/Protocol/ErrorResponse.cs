using System.Text.Json.Serialization;

namespace Celer.Server.Protocol;

/// <summary>OpenAI's error envelope: <c>{"error": {"message", "type", "param", "code"}}</c>.</summary>
public sealed record ErrorResponse([property: JsonPropertyName("error")] ErrorInfo Error);

/// <summary>
/// The body of an error. <c>type</c> follows vLLM (<c>BadRequestError</c>, <c>NotFoundError</c>, …, the
/// names of the OpenAI Python client's exception classes); <c>code</c> is OpenAI's machine-readable
/// string (<c>context_length_exceeded</c>, <c>invalid_api_key</c>, …) or null.
/// </summary>
public sealed record ErrorInfo(
    [property: JsonPropertyName("message")] string Message,
    [property: JsonPropertyName("type")] string Type,
    [property: JsonPropertyName("param")] string? Param,
    [property: JsonPropertyName("code")] string? Code);
