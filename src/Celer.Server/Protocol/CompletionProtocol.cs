using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.Json.Serialization;

namespace Celer.Server.Protocol;

/// <summary>The body of <c>POST /v1/completions</c>.</summary>
public sealed class CompletionRequest : SamplingRequest
{
    /// <summary>string | string[] | int[] | int[][]: parsed by <c>CompletionPrompts</c>.</summary>
    [JsonPropertyName("prompt")] public JsonElement? Prompt { get; set; }
    [JsonPropertyName("logprobs")] public int? Logprobs { get; set; }
    [JsonPropertyName("suffix")] public string? Suffix { get; set; }
    [JsonPropertyName("add_special_tokens")] public bool? AddSpecialTokens { get; set; }
}

/// <summary>The legacy completions logprobs format (parallel arrays, one entry per token).</summary>
public sealed class CompletionLogprobs
{
    [JsonPropertyName("text_offset")] public List<int> TextOffset { get; } = [];
    [JsonPropertyName("token_logprobs")] public List<float?> TokenLogprobs { get; } = [];
    [JsonPropertyName("tokens")] public List<string> Tokens { get; } = [];
    [JsonPropertyName("top_logprobs")] public List<Dictionary<string, float>?> TopLogprobs { get; } = [];
}

public sealed record CompletionChoice(
    [property: JsonPropertyName("index")] int Index,
    [property: JsonPropertyName("text")] string Text,
    [property: JsonPropertyName("logprobs")] CompletionLogprobs? Logprobs,
    [property: JsonPropertyName("finish_reason")] string? FinishReason,
    [property: JsonPropertyName("stop_reason")] JsonNode? StopReason,
    [property: JsonPropertyName("prompt_logprobs"), JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] List<Dictionary<string, PromptLogprobEntry>?>? PromptLogprobs = null);

public sealed record CompletionResponse(
    [property: JsonPropertyName("id")] string Id,
    [property: JsonPropertyName("created")] long Created,
    [property: JsonPropertyName("model")] string Model,
    [property: JsonPropertyName("choices")] IReadOnlyList<CompletionChoice> Choices,
    [property: JsonPropertyName("usage")] UsageInfo Usage)
{
    [JsonPropertyName("object")] public string Object => "text_completion";
}

/// <summary>One SSE chunk of a streamed completion (same <c>object</c> as the full response, as OpenAI does).</summary>
public sealed record CompletionStreamResponse(
    [property: JsonPropertyName("id")] string Id,
    [property: JsonPropertyName("created")] long Created,
    [property: JsonPropertyName("model")] string Model,
    [property: JsonPropertyName("choices")] IReadOnlyList<CompletionChoice> Choices,
    [property: JsonPropertyName("usage"), JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] UsageInfo? Usage = null)
{
    [JsonPropertyName("object")] public string Object => "text_completion";
}
