using System.Text.Json;
using Celer.Engine;
using Celer.Server.Protocol;

namespace Celer.Server.Serving;

/// <summary>
/// A request's output constraint from whichever field carries it, as vLLM reads them: OpenAI's <c>response_format</c>
/// (<c>json_object</c>, <c>json_schema</c>), vLLM's <c>structured_outputs</c> object (<c>json</c>, <c>regex</c>,
/// <c>choice</c>, <c>grammar</c>, <c>json_object</c>, <c>structural_tag</c> and its whitespace and additional-properties flags) and the older
/// <c>guided_json</c>, <c>guided_regex</c>, <c>guided_choice</c>, <c>guided_grammar</c>, <c>guided_whitespace_pattern</c>.
/// Shape errors are 400s naming the field; the constraint itself is compiled (and refused) at admission.
/// </summary>
public static class StructuredOutputsRequest
{
    internal static StructuredOutputsParams? From(SamplingRequest request)
    {
        var fromFormat = FromResponseFormat(request.ResponseFormat);
        var fromObject = FromObject(request.StructuredOutputs);
        var fromGuided = FromGuided(request);
        int given = (fromFormat is null ? 0 : 1) + (fromObject is null ? 0 : 1) + (fromGuided is null ? 0 : 1);
        if (given > 1)
        {
            throw OpenAIException.BadRequest("Only one of response_format (json_object/json_schema), structured_outputs and guided_* may constrain the output.", "structured_outputs");
        }

        return fromFormat ?? fromObject ?? fromGuided;
    }

    private static StructuredOutputsParams? FromResponseFormat(ResponseFormat? format)
    {
        switch (format?.Type)
        {
            case null or "text":
                return null;
            case "json_object":
                return new StructuredOutputsParams { JsonObject = true };
            case "structural_tag":
                return new StructuredOutputsParams
                {
                    StructuralTag = new System.Text.Json.Nodes.JsonObject { ["structures"] = format.Structures?.DeepClone(), ["triggers"] = format.Triggers?.DeepClone() }.ToJsonString(),
                };
            case "json_schema":
                if (format.JsonSchema?.Schema is not { } schema)
                {
                    throw OpenAIException.BadRequest("response_format of type json_schema requires `json_schema.schema`.", "response_format");
                }

                return new StructuredOutputsParams { Json = schema.ToJsonString() };
            default:
                throw OpenAIException.BadRequest($"response_format type must be 'text', 'json_object', 'json_schema' or 'structural_tag', got '{format.Type}'.", "response_format");
        }
    }

    /// <summary>vLLM's <c>structured_outputs</c> object (also <c>celer bench --structured-outputs</c>); null for JSON null.</summary>
    public static StructuredOutputsParams? FromObject(JsonElement? element)
    {
        if (element is not { ValueKind: not JsonValueKind.Null } so)
        {
            return null;
        }

        if (so.ValueKind != JsonValueKind.Object)
        {
            throw OpenAIException.BadRequest("`structured_outputs` must be an object.", "structured_outputs");
        }

        var result = new StructuredOutputsParams();
        foreach (var property in so.EnumerateObject())
        {
            var v = property.Value;
            if (v.ValueKind == JsonValueKind.Null)
            {
                continue;
            }

            string field = "structured_outputs." + property.Name;
            if (property.Name == "disable_fallback")
            {
                // One backend, which never falls back: the flag holds whatever its value; it must still be a boolean.
                Bool(v, field);
                continue;
            }

            result = property.Name switch
            {
                "json" => result with { Json = JsonText(v, field) },
                "regex" => result with { Regex = String(v, field) },
                "choice" => result with { Choice = Strings(v, field) },
                "grammar" => result with { Grammar = String(v, field) },
                "json_object" => result with { JsonObject = Bool(v, field) },
                "disable_any_whitespace" => result with { DisableAnyWhitespace = Bool(v, field) },
                "disable_additional_properties" => result with { DisableAdditionalProperties = Bool(v, field) },
                "whitespace_pattern" => result with { WhitespacePattern = String(v, field) },
                "structural_tag" => result with { StructuralTag = JsonText(v, field) },
                _ => throw OpenAIException.BadRequest($"Unknown field `{field}`.", field),
            };
        }

        return result;
    }

    private static StructuredOutputsParams? FromGuided(SamplingRequest request)
    {
        StructuredOutputsParams? result = null;
        if (request.GuidedJson is { ValueKind: not JsonValueKind.Null } json)
        {
            result = new StructuredOutputsParams { Json = JsonText(json, "guided_json") };
        }

        if (request.GuidedRegex is { ValueKind: not JsonValueKind.Null } regex)
        {
            result = (result ?? new()) with { Regex = String(regex, "guided_regex") };
        }

        if (request.GuidedChoice is { ValueKind: not JsonValueKind.Null } choice)
        {
            result = (result ?? new()) with { Choice = Strings(choice, "guided_choice") };
        }

        if (request.GuidedGrammar is { ValueKind: not JsonValueKind.Null } grammar)
        {
            result = (result ?? new()) with { Grammar = String(grammar, "guided_grammar") };
        }

        if (request.GuidedWhitespacePattern is { } whitespace)
        {
            if (result is null)
            {
                throw OpenAIException.BadRequest("`guided_whitespace_pattern` applies to guided_json only.", "guided_whitespace_pattern");
            }

            result = result with { WhitespacePattern = whitespace };
        }

        return result;
    }

    // A schema may come as an object or as JSON text in a string (vLLM takes both).
    private static string JsonText(JsonElement v, string field) => v.ValueKind switch
    {
        JsonValueKind.String => v.GetString()!,
        JsonValueKind.Object or JsonValueKind.True or JsonValueKind.False => v.GetRawText(),
        _ => throw OpenAIException.BadRequest($"`{field}` must be a JSON schema (an object, or its text).", field),
    };

    private static string String(JsonElement v, string field) =>
        v.ValueKind == JsonValueKind.String ? v.GetString()! : throw OpenAIException.BadRequest($"`{field}` must be a string.", field);

    private static bool Bool(JsonElement v, string field) => v.ValueKind switch
    {
        JsonValueKind.True => true,
        JsonValueKind.False => false,
        _ => throw OpenAIException.BadRequest($"`{field}` must be a boolean.", field),
    };

    private static List<string> Strings(JsonElement v, string field)
    {
        if (v.ValueKind != JsonValueKind.Array)
        {
            throw OpenAIException.BadRequest($"`{field}` must be a list of strings.", field);
        }

        var list = new List<string>();
        foreach (var item in v.EnumerateArray())
        {
            list.Add(item.ValueKind == JsonValueKind.String ? item.GetString()! : throw OpenAIException.BadRequest($"`{field}` must be a list of strings.", field));
        }

        return list;
    }
}
