using System.Text.Json;
using System.Text.Json.Nodes;
using Celer.Server.Protocol;

namespace Celer.Server.Serving;

/// <summary>
/// Fields this server cannot honour yet, refused with a 400 that names them rather than accepted and ignored
/// (BAD_INPUT.md #15): every output constraint needs structured-output decoding, which is not built; and vLLM's
/// rules for <c>stream_options</c>.
/// </summary>
internal static class UnsupportedFields
{
    private const string NoStructuredOutputs = "is not supported by this server yet (no structured-output decoding): the output could not be constrained.";

    public static void Check(SamplingRequest request)
    {
        foreach ((string name, JsonElement? value) in new[]
                 {
                     ("guided_json", request.GuidedJson), ("guided_regex", request.GuidedRegex), ("guided_choice", request.GuidedChoice),
                     ("guided_grammar", request.GuidedGrammar), ("structured_outputs", request.StructuredOutputs),
                 })
        {
            if (value is { ValueKind: not JsonValueKind.Null })
                throw OpenAIException.BadRequest($"`{name}` {NoStructuredOutputs}", name);
        }

        if (request.StreamOptions is { } streamOptions)
        {
            if (request.Stream != true)
                throw OpenAIException.BadRequest("Stream options can only be defined when `stream=True`.", "stream_options");
        }
    }

    /// <summary>
    /// Chat only: <c>response_format</c> other than <c>text</c>, and a <c>tool_choice</c> that forces a call
    /// (<c>required</c> or a named function); <c>auto</c> and <c>none</c> go to the chat template as they are.
    /// </summary>
    public static void Check(ChatCompletionRequest request)
    {
        Check((SamplingRequest)request);
        if (request.ResponseFormat is { } format)
        {
            switch (format.Type)
            {
                case "text":
                    break;
                case "json_object" or "json_schema":
                    if (format.Type == "json_schema" && format.JsonSchema is null)
                        throw OpenAIException.BadRequest("response_format of type json_schema requires a `json_schema` field.", "response_format");
                    throw OpenAIException.BadRequest($"response_format of type {format.Type} {NoStructuredOutputs}", "response_format");
                default:
                    throw OpenAIException.BadRequest($"response_format type must be 'text', 'json_object' or 'json_schema', got '{format.Type}'.", "response_format");
            }
        }

        if (request.ToolChoice is { } choice && !(choice is JsonValue v && v.TryGetValue(out string? mode) && mode is "auto" or "none"))
            throw OpenAIException.BadRequest($"tool_choice {choice.ToJsonString()} {NoStructuredOutputs} Use \"auto\" or \"none\".", "tool_choice");
    }
}
