using System.Buffers.Binary;
using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.Json.Serialization;

namespace Celer.Server.Protocol;

/// <summary>
/// The input fields every pooling route shares (vLLM's pooling request mixins): <c>input</c> as a completion's prompt,
/// or a conversation in <c>messages</c> rendered through the chat template into one input (vLLM's chat variants of the
/// embedding and classification requests), with vLLM's <c>truncate_prompt_tokens</c>, <c>add_special_tokens</c> and
/// <c>priority</c>.
/// </summary>
public abstract class PoolingInputRequest
{
    [JsonPropertyName("model")] public string? Model { get; set; }

    /// <summary>string | string[] | int[] | int[][]: parsed by <c>CompletionPrompts</c>, as a completion's prompt.</summary>
    [JsonPropertyName("input")] public JsonElement? Input { get; set; }

    /// <summary>OpenAI chat messages, instead of <c>input</c>: rendered by the chat template into one input.</summary>
    [JsonPropertyName("messages")] public JsonElement? Messages { get; set; }

    /// <summary>With <c>messages</c>: add the template's generation prompt (vLLM's default for pooling: false).</summary>
    [JsonPropertyName("add_generation_prompt")] public bool? AddGenerationPrompt { get; set; }

    /// <summary>With <c>messages</c>: leave the final message open, as a chat completion's prefill.</summary>
    [JsonPropertyName("continue_final_message")] public bool? ContinueFinalMessage { get; set; }

    /// <summary>With <c>messages</c>: a template for this request (only with <c>--trust-request-chat-template</c>).</summary>
    [JsonPropertyName("chat_template")] public string? ChatTemplate { get; set; }

    /// <summary>With <c>messages</c>: extra variables for the template.</summary>
    [JsonPropertyName("chat_template_kwargs")] public JsonObject? ChatTemplateKwargs { get; set; }

    [JsonPropertyName("user")] public string? User { get; set; }

    /// <summary>Keep the last k tokens of each input; -1: the model's maximum length.</summary>
    [JsonPropertyName("truncate_prompt_tokens")] public int? TruncatePromptTokens { get; set; }

    /// <summary>Default true for <c>input</c>, false for <c>messages</c> (the chat template adds its own).</summary>
    [JsonPropertyName("add_special_tokens")] public bool? AddSpecialTokens { get; set; }

    [JsonPropertyName("priority")] public int? Priority { get; set; }
}

/// <summary>
/// The body of <c>POST /v1/embeddings</c> and of vLLM's <c>POST /pooling</c>: OpenAI's embedding fields plus vLLM's
/// extras (<c>normalize</c> and the shared pooling inputs). With <c>messages</c> instead of <c>input</c> it is vLLM's
/// <c>EmbeddingChatRequest</c>.
/// </summary>
public sealed class EmbeddingRequest : PoolingInputRequest
{
    /// <summary>"float" (default) or "base64": the vector's little-endian float32 bytes, base64-encoded.</summary>
    [JsonPropertyName("encoding_format")] public string? EncodingFormat { get; set; }

    /// <summary>The vector's length (Matryoshka models only).</summary>
    [JsonPropertyName("dimensions")] public int? Dimensions { get; set; }

    /// <summary>L2-normalize the vector; null: the model's pooler decides.</summary>
    [JsonPropertyName("normalize")] public bool? Normalize { get; set; }
}

/// <summary>
/// A pooled vector on the wire: an array of numbers, or with <c>encoding_format: "base64"</c> a string of its
/// little-endian float32 bytes (what OpenAI returns, and what its clients decode).
/// </summary>
[JsonConverter(typeof(PooledVectorConverter))]
public sealed class PooledVector
{
    private PooledVector(float[]? values, string? base64)
    {
        Values = values;
        Base64 = base64;
    }

    /// <summary>The numbers, when sent as an array.</summary>
    public float[]? Values { get; }

    /// <summary>The encoded bytes, when sent as base64.</summary>
    public string? Base64 { get; }

    public static PooledVector AsFloats(float[] values) => new(values, null);

    public static PooledVector AsBase64(float[] values)
    {
        ArgumentNullException.ThrowIfNull(values);
        var bytes = new byte[values.Length * sizeof(float)];
        for (var i = 0; i < values.Length; i++)
            BinaryPrimitives.WriteSingleLittleEndian(bytes.AsSpan(i * sizeof(float)), values[i]);
        return new(null, Convert.ToBase64String(bytes));
    }
}

/// <summary>Writes a <see cref="PooledVector"/> as its array or its base64 string; the server never reads one.</summary>
internal sealed class PooledVectorConverter : JsonConverter<PooledVector>
{
    public override PooledVector Read(ref Utf8JsonReader reader, Type typeToConvert, JsonSerializerOptions options) =>
        throw new NotSupportedException("Pooled vectors are only written.");

    public override void Write(Utf8JsonWriter writer, PooledVector value, JsonSerializerOptions options)
    {
        if (value.Base64 is { } base64)
        {
            writer.WriteStringValue(base64);
            return;
        }

        writer.WriteStartArray();
        foreach (var x in value.Values ?? [])
            writer.WriteNumberValue(x);
        writer.WriteEndArray();
    }
}

/// <summary>One input's vector in an embeddings response.</summary>
public sealed record EmbeddingData(
    [property: JsonPropertyName("index")] int Index,
    [property: JsonPropertyName("embedding")] PooledVector Embedding)
{
    [JsonPropertyName("object")] public string Object => "embedding";
}

/// <summary>The response of <c>POST /v1/embeddings</c>; <c>data</c> follows the order of the inputs.</summary>
public sealed record EmbeddingResponse(
    [property: JsonPropertyName("id")] string Id,
    [property: JsonPropertyName("created")] long Created,
    [property: JsonPropertyName("model")] string Model,
    [property: JsonPropertyName("data")] IReadOnlyList<EmbeddingData> Data,
    [property: JsonPropertyName("usage")] EmbeddingUsage Usage)
{
    [JsonPropertyName("object")] public string Object => "list";
}

/// <summary>One input's vector in a vLLM <c>/pooling</c> response.</summary>
public sealed record PoolingData(
    [property: JsonPropertyName("index")] int Index,
    [property: JsonPropertyName("data")] PooledVector Data)
{
    [JsonPropertyName("object")] public string Object => "pooling";
}

/// <summary>The response of vLLM's <c>POST /pooling</c>.</summary>
public sealed record PoolingResponse(
    [property: JsonPropertyName("id")] string Id,
    [property: JsonPropertyName("created")] long Created,
    [property: JsonPropertyName("model")] string Model,
    [property: JsonPropertyName("data")] IReadOnlyList<PoolingData> Data,
    [property: JsonPropertyName("usage")] EmbeddingUsage Usage)
{
    [JsonPropertyName("object")] public string Object => "list";
}

/// <summary>An embedding's token accounting, as OpenAI reports it: input tokens only.</summary>
public sealed record EmbeddingUsage(
    [property: JsonPropertyName("prompt_tokens")] int PromptTokens,
    [property: JsonPropertyName("total_tokens")] int TotalTokens);
