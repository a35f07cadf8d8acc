using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.Json.Serialization;

namespace Celer.Server.Protocol;

/// <summary>The body of <c>POST /v1/chat/completions</c>.</summary>
public sealed class ChatCompletionRequest : SamplingRequest
{
    /// <summary>Kept as JSON: each message goes to the chat template as an object, with its content flattened.</summary>
    [JsonPropertyName("messages")] public JsonElement? Messages { get; set; }
    [JsonPropertyName("max_completion_tokens")] public int? MaxCompletionTokens { get; set; }
    [JsonPropertyName("logprobs")] public bool? Logprobs { get; set; }
    [JsonPropertyName("top_logprobs")] public int? TopLogprobs { get; set; }
    [JsonPropertyName("tools")] public JsonArray? Tools { get; set; }
    [JsonPropertyName("tool_choice")] public JsonNode? ToolChoice { get; set; }
    [JsonPropertyName("parallel_tool_calls")] public bool? ParallelToolCalls { get; set; }
    /// <summary>vLLM's: false leaves the reasoning a reasoning parser splits off out of the reply.</summary>
    [JsonPropertyName("include_reasoning")] public bool? IncludeReasoning { get; set; }

    // vLLM's chat extras.
    [JsonPropertyName("add_generation_prompt")] public bool? AddGenerationPrompt { get; set; }
    [JsonPropertyName("continue_final_message")] public bool? ContinueFinalMessage { get; set; }
    [JsonPropertyName("add_special_tokens")] public bool? AddSpecialTokens { get; set; }
    [JsonPropertyName("chat_template")] public string? ChatTemplate { get; set; }
    [JsonPropertyName("chat_template_kwargs")] public JsonObject? ChatTemplateKwargs { get; set; }
}

/// <summary>
/// OpenAI's <c>response_format</c>: <c>text</c>, <c>json_object</c> (any JSON object) or <c>json_schema</c>
/// (<c>{"name", "description", "schema", "strict"}</c>), and vLLM's <c>structural_tag</c>; all but text become structured
/// outputs.
/// </summary>
public sealed class ResponseFormat
{
    [JsonPropertyName("type")] public string? Type { get; set; }
    [JsonPropertyName("json_schema")] public JsonSchemaFormat? JsonSchema { get; set; }

    /// <summary><c>structural_tag</c>'s structures (<c>begin</c>, <c>schema</c>, <c>end</c>) and triggers.</summary>
    [JsonPropertyName("structures")] public JsonArray? Structures { get; set; }
    [JsonPropertyName("triggers")] public JsonArray? Triggers { get; set; }
}

/// <summary>
/// <c>response_format.json_schema</c>. <c>strict</c> asks that the output follow the schema exactly, which every
/// constrained output does here (objects take only the properties a schema allows, as vLLM's XGrammar backend).
/// </summary>
public sealed class JsonSchemaFormat
{
    [JsonPropertyName("name")] public string? Name { get; set; }
    [JsonPropertyName("description")] public string? Description { get; set; }
    [JsonPropertyName("schema")] public JsonNode? Schema { get; set; }
    [JsonPropertyName("strict")] public bool? Strict { get; set; }
}

/// <summary>
/// The reply. <c>content</c> is null when the model only called tools or only reasoned; <c>tool_calls</c> is left out
/// when there are none (as vLLM and OpenAI leave it). The reasoning a <c>--reasoning-parser</c> split off is sent twice:
/// as <c>reasoning_content</c> (DeepSeek's API and vLLM before 0.18; what most clients read) and as <c>reasoning</c>
/// (vLLM's name since 0.11, its only one since 0.18).
/// </summary>
public sealed record ChatMessage(
    [property: JsonPropertyName("role")] string Role,
    [property: JsonPropertyName("content")] string? Content)
{
    [JsonPropertyName("tool_calls"), JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] public IReadOnlyList<ChatToolCall>? ToolCalls { get; init; }
    [JsonPropertyName("reasoning_content"), JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] public string? ReasoningContent { get; init; }
    [JsonPropertyName("reasoning"), JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] public string? Reasoning { get; init; }
}

/// <summary>A tool call in a reply: <c>arguments</c> is the JSON object as a string, as OpenAI sends it.</summary>
public sealed record ChatToolCall(
    [property: JsonPropertyName("id")] string Id,
    [property: JsonPropertyName("function")] ChatFunctionCall Function)
{
    [JsonPropertyName("type")] public string Type => "function";
}

public sealed record ChatFunctionCall(
    [property: JsonPropertyName("name")] string Name,
    [property: JsonPropertyName("arguments")] string Arguments);

/// <summary>
/// The streamed delta: <c>role</c> on the first chunk of a choice, then <c>content</c>, <c>reasoning_content</c> and
/// <c>reasoning</c> text, and <c>tool_calls</c> deltas.
/// </summary>
public sealed record ChatDelta(
    [property: JsonPropertyName("role"), JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] string? Role,
    [property: JsonPropertyName("content"), JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] string? Content)
{
    [JsonPropertyName("reasoning_content"), JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] public string? ReasoningContent { get; init; }
    [JsonPropertyName("reasoning"), JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] public string? Reasoning { get; init; }
    [JsonPropertyName("tool_calls"), JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] public IReadOnlyList<ChatToolCallDelta>? ToolCalls { get; init; }
}

/// <summary>
/// One tool call's part of a streamed delta, as OpenAI streams calls: the first delta of a call carries its
/// <c>index</c>, <c>id</c>, <c>type</c> and whole <c>name</c>; the next ones the <c>index</c> and a piece of <c>arguments</c>.
/// </summary>
public sealed record ChatToolCallDelta(
    [property: JsonPropertyName("index")] int Index,
    [property: JsonPropertyName("id"), JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] string? Id,
    [property: JsonPropertyName("type"), JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] string? Type,
    [property: JsonPropertyName("function")] ChatFunctionCallDelta Function);

public sealed record ChatFunctionCallDelta(
    [property: JsonPropertyName("name"), JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] string? Name,
    [property: JsonPropertyName("arguments"), JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] string? Arguments);

/// <summary>One token of OpenAI's chat logprobs: the token, its logprob, its UTF-8 bytes.</summary>
public sealed record ChatTopLogprob(
    [property: JsonPropertyName("token")] string Token,
    [property: JsonPropertyName("logprob")] float Logprob,
    [property: JsonPropertyName("bytes")] IReadOnlyList<int> Bytes);

public sealed record ChatTokenLogprob(
    [property: JsonPropertyName("token")] string Token,
    [property: JsonPropertyName("logprob")] float Logprob,
    [property: JsonPropertyName("bytes")] IReadOnlyList<int> Bytes,
    [property: JsonPropertyName("top_logprobs")] IReadOnlyList<ChatTopLogprob> TopLogprobs);

public sealed record ChatLogprobs([property: JsonPropertyName("content")] IReadOnlyList<ChatTokenLogprob> Content);

public sealed record ChatChoice(
    [property: JsonPropertyName("index")] int Index,
    [property: JsonPropertyName("message")] ChatMessage Message,
    [property: JsonPropertyName("logprobs")] ChatLogprobs? Logprobs,
    [property: JsonPropertyName("finish_reason")] string? FinishReason,
    [property: JsonPropertyName("stop_reason")] JsonNode? StopReason);

public sealed record ChatCompletionResponse(
    [property: JsonPropertyName("id")] string Id,
    [property: JsonPropertyName("created")] long Created,
    [property: JsonPropertyName("model")] string Model,
    [property: JsonPropertyName("choices")] IReadOnlyList<ChatChoice> Choices,
    [property: JsonPropertyName("usage")] UsageInfo Usage,
    [property: JsonPropertyName("prompt_logprobs"), JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] List<Dictionary<string, PromptLogprobEntry>?>? PromptLogprobs = null)
{
    [JsonPropertyName("object")] public string Object => "chat.completion";
}

public sealed record ChatStreamChoice(
    [property: JsonPropertyName("index")] int Index,
    [property: JsonPropertyName("delta")] ChatDelta Delta,
    [property: JsonPropertyName("logprobs")] ChatLogprobs? Logprobs,
    [property: JsonPropertyName("finish_reason")] string? FinishReason,
    [property: JsonPropertyName("stop_reason"), JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] JsonNode? StopReason = null);

public sealed record ChatCompletionChunk(
    [property: JsonPropertyName("id")] string Id,
    [property: JsonPropertyName("created")] long Created,
    [property: JsonPropertyName("model")] string Model,
    [property: JsonPropertyName("choices")] IReadOnlyList<ChatStreamChoice> Choices,
    [property: JsonPropertyName("usage"), JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] UsageInfo? Usage = null)
{
    [JsonPropertyName("object")] public string Object => "chat.completion.chunk";
}
