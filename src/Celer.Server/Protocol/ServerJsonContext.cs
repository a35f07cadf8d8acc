using System.Text.Encodings.Web;
using System.Text.Json;
using System.Text.Json.Serialization;

namespace Celer.Server.Protocol;

/// <summary>
/// Source-generated serializers for every wire type (trim- and AOT-safe). Reading is strict JSON:
/// no comments, no trailing commas, no NaN literals; unknown fields are skipped, as OpenAI clients
/// send new fields all the time.
/// </summary>
[JsonSourceGenerationOptions(
    GenerationMode = JsonSourceGenerationMode.Default,
    NumberHandling = JsonNumberHandling.Strict,
    UnmappedMemberHandling = JsonUnmappedMemberHandling.Skip)]
[JsonSerializable(typeof(CompletionRequest))]
[JsonSerializable(typeof(CompletionResponse))]
[JsonSerializable(typeof(CompletionStreamResponse))]
[JsonSerializable(typeof(ChatCompletionRequest))]
[JsonSerializable(typeof(ChatCompletionResponse))]
[JsonSerializable(typeof(ChatCompletionChunk))]
[JsonSerializable(typeof(EmbeddingRequest))]
[JsonSerializable(typeof(EmbeddingResponse))]
[JsonSerializable(typeof(PoolingResponse))]
[JsonSerializable(typeof(ScoreRequest))]
[JsonSerializable(typeof(ScoreResponse))]
[JsonSerializable(typeof(RerankRequest))]
[JsonSerializable(typeof(RerankResponse))]
[JsonSerializable(typeof(ClassificationRequest))]
[JsonSerializable(typeof(ClassificationResponse))]
[JsonSerializable(typeof(TokenizeRequest))]
[JsonSerializable(typeof(TokenizeResponse))]
[JsonSerializable(typeof(DetokenizeRequest))]
[JsonSerializable(typeof(DetokenizeResponse))]
[JsonSerializable(typeof(ModelList))]
[JsonSerializable(typeof(ModelCard))]
[JsonSerializable(typeof(IsSleepingResponse))]
[JsonSerializable(typeof(VersionResponse))]
[JsonSerializable(typeof(ErrorResponse))]
[JsonSerializable(typeof(UsageInfo))]
public sealed partial class ServerJsonContext : JsonSerializerContext
{
    /// <summary>
    /// The context every endpoint writes with: text as clients expect to read it (quotes, &lt; and &gt;, and non-ASCII
    /// characters as they are, not as \u escapes — bodies are JSON, never embedded in HTML).
    /// </summary>
    public static ServerJsonContext Wire => LazyWire.Value;

    // Lazy: the generated Default must exist first, and static initializers of partial files run in no fixed order.
    private static readonly Lazy<ServerJsonContext> LazyWire = new(() => new ServerJsonContext(
        new JsonSerializerOptions(Default!.Options) { Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping }));
}
