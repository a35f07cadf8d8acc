using System.Text.Json;
using System.Text.Json.Serialization;

namespace Celer.Server.Protocol;

/// <summary>
/// The body of vLLM's <c>POST /score</c> (and <c>/v1/score</c>): two sides of texts, each a string or a list of strings,
/// under any of vLLM's names (<c>text_1</c>/<c>text_2</c>, <c>queries</c>/<c>documents</c>, <c>queries</c>/<c>items</c>,
/// <c>data_1</c>/<c>data_2</c>), with vLLM's <c>truncate_prompt_tokens</c> and <c>priority</c>.
/// </summary>
public sealed class ScoreRequest
{
    [JsonPropertyName("model")] public string? Model { get; set; }

    [JsonPropertyName("text_1")] public JsonElement? Text1 { get; set; }

    [JsonPropertyName("text_2")] public JsonElement? Text2 { get; set; }

    [JsonPropertyName("queries")] public JsonElement? Queries { get; set; }

    [JsonPropertyName("documents")] public JsonElement? Documents { get; set; }

    [JsonPropertyName("items")] public JsonElement? Items { get; set; }

    [JsonPropertyName("data_1")] public JsonElement? Data1 { get; set; }

    [JsonPropertyName("data_2")] public JsonElement? Data2 { get; set; }

    [JsonPropertyName("user")] public string? User { get; set; }

    /// <summary>
    /// Keep the last k tokens of each text; -1: the model's maximum length. Refused on a cross-encoder, whose pairs are
    /// truncated as the tokenizer's pair truncation would, which Celer does not do yet.
    /// </summary>
    [JsonPropertyName("truncate_prompt_tokens")] public int? TruncatePromptTokens { get; set; }

    [JsonPropertyName("priority")] public int? Priority { get; set; }

    /// <summary>On a cross-encoder, false: the raw logit instead of the score.</summary>
    [JsonPropertyName("use_activation")] public bool? UseActivation { get; set; }

    /// <summary>vLLM's older name of <c>use_activation</c> (it wins over it, as in vLLM).</summary>
    [JsonPropertyName("activation")] public bool? Activation { get; set; }
}

/// <summary>
/// The body of <c>POST /rerank</c> (<c>/v1/rerank</c>, <c>/v2/rerank</c>): Jina's and Cohere's rerank request as vLLM
/// takes it.
/// </summary>
public sealed class RerankRequest
{
    [JsonPropertyName("model")] public string? Model { get; set; }

    /// <summary>A string.</summary>
    [JsonPropertyName("query")] public JsonElement? Query { get; set; }

    /// <summary>A list of strings (or one string).</summary>
    [JsonPropertyName("documents")] public JsonElement? Documents { get; set; }

    /// <summary>How many results to return, best first; 0 or absent: all of them.</summary>
    [JsonPropertyName("top_n")] public int? TopN { get; set; }

    [JsonPropertyName("user")] public string? User { get; set; }

    /// <summary>Keep the last k tokens of the query and of each document; -1: the model's maximum length (not on a cross-encoder).</summary>
    [JsonPropertyName("truncate_prompt_tokens")] public int? TruncatePromptTokens { get; set; }

    [JsonPropertyName("priority")] public int? Priority { get; set; }

    /// <summary>On a cross-encoder, false: the raw logit instead of the score.</summary>
    [JsonPropertyName("use_activation")] public bool? UseActivation { get; set; }

    /// <summary>vLLM's older name of <c>use_activation</c> (it wins over it, as in vLLM).</summary>
    [JsonPropertyName("activation")] public bool? Activation { get; set; }
}

/// <summary>One pair's score in a score response.</summary>
public sealed record ScoreData(
    [property: JsonPropertyName("index")] int Index,
    [property: JsonPropertyName("score")] double Score)
{
    [JsonPropertyName("object")] public string Object => "score";
}

/// <summary>The response of <c>POST /score</c>; <c>data</c> follows the order of the pairs; vLLM's usage (no completion).</summary>
public sealed record ScoreResponse(
    [property: JsonPropertyName("id")] string Id,
    [property: JsonPropertyName("created")] long Created,
    [property: JsonPropertyName("model")] string Model,
    [property: JsonPropertyName("data")] IReadOnlyList<ScoreData> Data,
    [property: JsonPropertyName("usage")] UsageInfo Usage)
{
    [JsonPropertyName("object")] public string Object => "list";
}

/// <summary>The document of a rerank result, as it was sent.</summary>
public sealed record RerankDocument([property: JsonPropertyName("text")] string Text);

/// <summary>One document's place in a rerank response: its index in the request, its text and its score.</summary>
public sealed record RerankResult(
    [property: JsonPropertyName("index")] int Index,
    [property: JsonPropertyName("document")] RerankDocument Document,
    [property: JsonPropertyName("relevance_score")] double RelevanceScore);

/// <summary>The response of <c>POST /rerank</c>: the results best first, cut to <c>top_n</c>; the usage is vLLM's RerankUsage.</summary>
public sealed record RerankResponse(
    [property: JsonPropertyName("id")] string Id,
    [property: JsonPropertyName("model")] string Model,
    [property: JsonPropertyName("usage")] EmbeddingUsage Usage,
    [property: JsonPropertyName("results")] IReadOnlyList<RerankResult> Results);
