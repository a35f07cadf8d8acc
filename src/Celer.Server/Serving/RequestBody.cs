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
        RejectUnpairedSurrogates(body);

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

    /// <summary>
    /// Valid UTF-8 can still spell an unpaired UTF-16 surrogate as a JSON escape (<c>"a\ud800b"</c>), which no text
    /// encoding can carry. Values deserialized as strings reject it, but fields kept as JSON (prompt, stop, message
    /// content) would only fail deep inside tokenization: check every escaped string once, up front, and name the
    /// top-level field. Malformed JSON is left to the deserializer's own error.
    /// </summary>
    private static void RejectUnpairedSurrogates(ReadOnlySpan<byte> body)
    {
        var reader = new Utf8JsonReader(body);
        string? field = null;
        try
        {
            while (reader.Read())
            {
                if (reader.TokenType == JsonTokenType.PropertyName && reader.CurrentDepth == 1)
                    field = reader.GetString();
                else if (reader.TokenType is JsonTokenType.String or JsonTokenType.PropertyName && reader.ValueIsEscaped)
                    reader.GetString();   // throws InvalidOperationException on an unpaired surrogate
            }
        }
        catch (JsonException)
        {
        }
        catch (InvalidOperationException)
        {
            throw OpenAIException.BadRequest(
                $"{(field is null ? "The request body has" : $"Invalid value for '{field}':")} text with an unpaired UTF-16 surrogate escape (\\ud800-\\udfff), which is not valid Unicode.", field);
        }
    }

    private static bool IsJsonContentType(string? contentType) =>
        contentType is not null
        && MediaTypeHeaderValue.TryParse(contentType, out var mediaType)
        && mediaType.MediaType.Equals("application/json", StringComparison.OrdinalIgnoreCase);
}
