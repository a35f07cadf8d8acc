using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.Json.Serialization;

namespace Celer.Server.Protocol;

/// <summary><c>stream_options</c>: OpenAI's <c>include_usage</c> and vLLM's <c>continuous_usage_stats</c>.</summary>
public sealed class StreamOptions
{
    [JsonPropertyName("include_usage")] public bool? IncludeUsage { get; set; }
    [JsonPropertyName("continuous_usage_stats")] public bool? ContinuousUsageStats { get; set; }

    /// <summary>vLLM's rule: every chunk carries the usage so far when both include_usage and continuous_usage_stats are set.</summary>
    [JsonIgnore] public bool Continuous => IncludeUsage == true && ContinuousUsageStats == true;
}

/// <summary>
/// Fields shared by <c>/v1/completions</c> and <c>/v1/chat/completions</c>: OpenAI's sampling fields
/// plus vLLM's extra sampling parameters, which vLLM accepts at the top level of the body.
/// Polymorphic fields (<c>stop</c>, <c>logit_bias</c>) stay <see cref="JsonElement"/> so that a
/// wrong shape gets a 400 that names the field rather than a serializer message.
/// </summary>
public abstract class SamplingRequest
{
    [JsonPropertyName("model")] public string? Model { get; set; }
    [JsonPropertyName("n")] public int? N { get; set; }
    /// <summary>A completions field that vLLM's chat API accepts too; checked against <c>n</c> on both routes.</summary>
    [JsonPropertyName("best_of")] public int? BestOf { get; set; }
    [JsonPropertyName("max_tokens")] public int? MaxTokens { get; set; }
    [JsonPropertyName("temperature")] public float? Temperature { get; set; }
    [JsonPropertyName("top_p")] public float? TopP { get; set; }
    [JsonPropertyName("presence_penalty")] public float? PresencePenalty { get; set; }
    [JsonPropertyName("frequency_penalty")] public float? FrequencyPenalty { get; set; }
    [JsonPropertyName("seed")] public long? Seed { get; set; }
    [JsonPropertyName("stop")] public JsonElement? Stop { get; set; }
    [JsonPropertyName("stream")] public bool? Stream { get; set; }
    [JsonPropertyName("stream_options")] public StreamOptions? StreamOptions { get; set; }
    [JsonPropertyName("logit_bias")] public JsonElement? LogitBias { get; set; }
    [JsonPropertyName("user")] public string? User { get; set; }
    [JsonPropertyName("echo")] public bool? Echo { get; set; }

    // vLLM's extra sampling parameters.
    [JsonPropertyName("top_k")] public int? TopK { get; set; }
    [JsonPropertyName("min_p")] public float? MinP { get; set; }
    [JsonPropertyName("repetition_penalty")] public float? RepetitionPenalty { get; set; }
    [JsonPropertyName("ignore_eos")] public bool? IgnoreEos { get; set; }
    [JsonPropertyName("min_tokens")] public int? MinTokens { get; set; }
    [JsonPropertyName("stop_token_ids")] public List<int>? StopTokenIds { get; set; }
    [JsonPropertyName("skip_special_tokens")] public bool? SkipSpecialTokens { get; set; }
    [JsonPropertyName("spaces_between_special_tokens")] public bool? SpacesBetweenSpecialTokens { get; set; }
    [JsonPropertyName("include_stop_str_in_output")] public bool? IncludeStopStrInOutput { get; set; }
    [JsonPropertyName("prompt_logprobs")] public int? PromptLogprobs { get; set; }
    [JsonPropertyName("priority")] public int? Priority { get; set; }
    [JsonPropertyName("cache_salt")] public string? CacheSalt { get; set; }
    [JsonPropertyName("return_tokens_as_token_ids")] public bool? ReturnTokensAsTokenIds { get; set; }
    [JsonPropertyName("allowed_token_ids")] public List<int>? AllowedTokenIds { get; set; }
    [JsonPropertyName("bad_words")] public List<string>? BadWords { get; set; }
    [JsonPropertyName("request_id")] public string? RequestId { get; set; }

    // Structured outputs: OpenAI's response_format, vLLM's structured_outputs and its older guided_* names.
    [JsonPropertyName("response_format")] public ResponseFormat? ResponseFormat { get; set; }
    [JsonPropertyName("structured_outputs")] public JsonElement? StructuredOutputs { get; set; }
    [JsonPropertyName("guided_json")] public JsonElement? GuidedJson { get; set; }
    [JsonPropertyName("guided_regex")] public JsonElement? GuidedRegex { get; set; }
    [JsonPropertyName("guided_choice")] public JsonElement? GuidedChoice { get; set; }
    [JsonPropertyName("guided_grammar")] public JsonElement? GuidedGrammar { get; set; }
    [JsonPropertyName("guided_whitespace_pattern")] public string? GuidedWhitespacePattern { get; set; }
}

/// <summary>Token accounting, as OpenAI reports it.</summary>
public sealed record UsageInfo(
    [property: JsonPropertyName("prompt_tokens")] int PromptTokens,
    [property: JsonPropertyName("total_tokens")] int TotalTokens,
    [property: JsonPropertyName("completion_tokens")] int CompletionTokens,
    [property: JsonPropertyName("prompt_tokens_details"), JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] PromptTokensDetails? PromptTokensDetails = null);

/// <summary>How many prompt tokens came from the prefix cache.</summary>
public sealed record PromptTokensDetails([property: JsonPropertyName("cached_tokens")] int CachedTokens);

/// <summary>
/// vLLM's <c>prompt_logprobs</c> entry for one prompt position: token id (as a string key) →
/// <c>{logprob, rank, decoded_token}</c>. The first position has none (null), as in vLLM.
/// </summary>
public sealed record PromptLogprobEntry(
    [property: JsonPropertyName("logprob")] float Logprob,
    [property: JsonPropertyName("rank")] int Rank,
    [property: JsonPropertyName("decoded_token")] string DecodedToken);

/// <summary>Helpers for the one field that is an int or a string on the wire.</summary>
internal static class StopReasonJson
{
    /// <summary>vLLM's <c>stop_reason</c>: the matched stop string, the stop token id, or null.</summary>
    public static JsonNode? From(object? stopReason) => stopReason switch
    {
        null => null,
        int tokenId => JsonValue.Create(tokenId),
        string text => JsonValue.Create(text),
        _ => JsonValue.Create(stopReason.ToString()),
    };
}
