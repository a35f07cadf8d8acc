using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.Json.Serialization;

namespace Celer.Server.Protocol;

/// <summary>
/// The body of <c>POST /tokenize</c>: vLLM's completion form (<c>prompt</c>) or chat form
/// (<c>messages</c>, rendered through the chat template), told apart by which field is present.
/// </summary>
public sealed class TokenizeRequest
{
    [JsonPropertyName("model")] public string? Model { get; set; }
    [JsonPropertyName("prompt")] public string? Prompt { get; set; }
    [JsonPropertyName("messages")] public JsonElement? Messages { get; set; }
    [JsonPropertyName("add_special_tokens")] public bool? AddSpecialTokens { get; set; }
    [JsonPropertyName("add_generation_prompt")] public bool? AddGenerationPrompt { get; set; }
    [JsonPropertyName("continue_final_message")] public bool? ContinueFinalMessage { get; set; }
    [JsonPropertyName("return_token_strs")] public bool? ReturnTokenStrs { get; set; }
    [JsonPropertyName("tools")] public JsonArray? Tools { get; set; }
    [JsonPropertyName("chat_template")] public string? ChatTemplate { get; set; }
    [JsonPropertyName("chat_template_kwargs")] public JsonObject? ChatTemplateKwargs { get; set; }
}

public sealed record TokenizeResponse(
    [property: JsonPropertyName("count")] int Count,
    [property: JsonPropertyName("max_model_len")] int MaxModelLen,
    [property: JsonPropertyName("tokens")] IReadOnlyList<int> Tokens,
    [property: JsonPropertyName("token_strs"), JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] IReadOnlyList<string>? TokenStrs);

public sealed class DetokenizeRequest
{
    [JsonPropertyName("model")] public string? Model { get; set; }
    [JsonPropertyName("tokens")] public List<int>? Tokens { get; set; }
}

public sealed record DetokenizeResponse([property: JsonPropertyName("prompt")] string Prompt);
