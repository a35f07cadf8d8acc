using System.Text.Json.Nodes;
using Celer.Server.Serving;

namespace Celer.Server.ToolCalling;

/// <summary>
/// The JSON schemas that <c>tool_choice: "required"</c> and a named tool choice constrain the output to, as vLLM's
/// <c>get_json_schema_from_tools</c> builds them: for <c>required</c>, a non-empty array of objects each naming one of
/// the tools (<c>"enum": [name]</c>) with its <c>parameters</c>, the tools' <c>$defs</c> merged at the top; for a named
/// function, that function's parameter schema as it is.
/// </summary>
internal static class ToolSchemas
{
    /// <summary>The function object of the tool with that name, or null.</summary>
    public static JsonObject? FindFunction(JsonArray tools, string name)
    {
        foreach (var tool in tools)
        {
            if (tool?["function"] is JsonObject function && function["name"] is JsonValue value
                && value.TryGetValue(out string? text) && text == name)
                return function;
        }
        return null;
    }

    /// <summary>The named function's <c>parameters</c>; null when it has none, and then vLLM constrains nothing.</summary>
    public static JsonObject? ForNamed(JsonArray tools, string name) =>
        FindFunction(tools, name)?["parameters"] is JsonObject parameters ? (JsonObject)parameters.DeepClone() : null;

    /// <summary>The schema of a non-empty array of calls of any of <paramref name="tools"/>.</summary>
    public static JsonObject ForRequired(JsonArray tools)
    {
        var anyOf = new JsonArray();
        var defs = new JsonObject();
        foreach (var tool in tools)
        {
            var function = (JsonObject)tool!["function"]!;
            var name = function["name"]!.GetValue<string>();
            var parameters = function["parameters"] is JsonObject given && given.Count > 0
                ? (JsonObject)given.DeepClone()
                : new JsonObject { ["type"] = "object", ["properties"] = new JsonObject() };
            // vLLM lifts each tool's $defs to the top of the schema, where the $refs of every tool can reach them.
            if (parameters["$defs"] is JsonObject toolDefs)
            {
                parameters.Remove("$defs");
                foreach (var (defName, defSchema) in toolDefs)
                {
                    if (defs.TryGetPropertyValue(defName, out var existing) && !JsonNode.DeepEquals(existing, defSchema))
                        throw OpenAIException.BadRequest($"Tool definition '{defName}' has multiple schemas, which is not supported.", "tools");
                    defs[defName] = defSchema?.DeepClone();
                }
            }
            anyOf.Add((JsonNode)new JsonObject
            {
                ["properties"] = new JsonObject
                {
                    ["name"] = new JsonObject { ["type"] = "string", ["enum"] = new JsonArray(name) },
                    ["parameters"] = parameters,
                },
                ["required"] = new JsonArray("name", "parameters"),
            });
        }
        var schema = new JsonObject
        {
            ["type"] = "array",
            ["minItems"] = 1,
            ["items"] = new JsonObject { ["type"] = "object", ["anyOf"] = anyOf },
        };
        if (defs.Count > 0)
            schema["$defs"] = defs;
        return schema;
    }
}
