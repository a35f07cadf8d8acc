using System.Text.Json;
using System.Text.Json.Serialization.Metadata;
using System.Text.Unicode;
using Microsoft.Net.Http.Headers;

namespace Celer.Server.Serving;

/// <summary>
/// Reads a JSON request body strictly: <c>application/json</c> only, valid UTF-8, a JSON object
/// (not an array, string or null). Kestrel's <c>MaxRequestBodySize</c> bounds the read, so an
/// oversized body fails with 413 before it is buffered whole.
/// </summary>
internal static class RequestBody
{
    public static async Task<T> ReadAsync<T>(HttpRequest request, JsonTypeInfo<T> typeInfo)
        where T : class
    {
        if (!IsJsonContentType(request.ContentType))
            throw OpenAIException.BadRequest("The request body must be JSON: set 'Content-Type: application/json'.");

        using var buffer = new MemoryStream();
        await request.Body.CopyToAsync(buffer, request.HttpContext.RequestAborted);
        var bytes = buffer.GetBuffer().AsMemory(0, (int)buffer.Length);
        return Parse(bytes.Span, typeInfo);
    }

    /// <summary>Parses a complete body; separate from the read so unit tests can feed it bytes.</summary>
    internal static T Parse<T>(ReadOnlySpan<byte> body, JsonTypeInfo<T> typeInfo)
        where T : class
    {
        // System.Text.Json checks UTF-8 only inside the values it decodes; a body kept partly as
        // JsonElement would carry invalid bytes into the tokenizer. Check the whole body once.
        if (!Utf8.IsValid(body))
            throw OpenAIException.BadRequest("The request body is not valid UTF-8.");

        var trimmed = body.TrimStart(" \t\r\n"u8);
        if (trimmed.IsEmpty || trimmed[0] != (byte)'{')
            throw OpenAIException.BadRequest("The request body must be a JSON object.");

        try
        {
            return JsonSerializer.Deserialize(body, typeInfo)
                ?? throw OpenAIException.BadRequest("The request body must be a JSON object.");
        }
        catch (JsonException e)
        {
            throw ErrorMapping.InvalidJson(e);
        }
    }

    private static bool IsJsonContentType(string? contentType) =>
        contentType is not null
        && MediaTypeHeaderValue.TryParse(contentType, out var mediaType)
        && mediaType.MediaType.Equals("application/json", StringComparison.OrdinalIgnoreCase);
}
