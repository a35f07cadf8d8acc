using System.Text.Json.Nodes;
using Celer.Server.Serving;
using Celer.Server.ToolCalling;

namespace Celer.Server.Tests.ToolCalling;

/// <summary>The schemas of required and named tool choices, against the shape of vLLM's <c>get_json_schema_from_tools</c>.</summary>
public sealed class ToolSchemasTests
{
    private static JsonArray Tools(string json) => (JsonArray)JsonNode.Parse(json)!;

    [Fact]
    public void Required_is_a_non_empty_array_of_named_calls_with_their_parameters()
    {
        var tools = Tools("""
            [{"type": "function", "function": {"name": "get_weather", "description": "d", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}},
             {"type": "function", "function": {"name": "get_time"}},
             {"type": "function", "function": {"name": "ping", "parameters": {}}}]
            """);
        // vLLM's dicts in order: a tool without parameters (or with {}) gets an empty object schema.
        var expected = JsonNode.Parse("""
            {"type": "array", "minItems": 1, "items": {"type": "object", "anyOf": [
              {"properties": {"name": {"type": "string", "enum": ["get_weather"]},
                              "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}},
               "required": ["name", "parameters"]},
              {"properties": {"name": {"type": "string", "enum": ["get_time"]}, "parameters": {"type": "object", "properties": {}}},
               "required": ["name", "parameters"]},
              {"properties": {"name": {"type": "string", "enum": ["ping"]}, "parameters": {"type": "object", "properties": {}}},
               "required": ["name", "parameters"]}]}}
            """);
        var schema = ToolSchemas.ForRequired(tools);
        Assert.True(JsonNode.DeepEquals(expected, schema), schema.ToJsonString());
        // The request's tools are not changed (they still go to the chat template).
        Assert.Null(tools[1]!["function"]!["parameters"]);
    }

    [Fact]
    public void Required_lifts_every_tools_defs_to_the_top()
    {
        var tools = Tools("""
            [{"type": "function", "function": {"name": "a", "parameters": {"type": "object", "properties": {"p": {"$ref": "#/$defs/Point"}}, "$defs": {"Point": {"type": "object"}}}}},
             {"type": "function", "function": {"name": "b", "parameters": {"type": "object", "properties": {"q": {"$ref": "#/$defs/Point"}}, "$defs": {"Point": {"type": "object"}, "Id": {"type": "integer"}}}}}]
            """);
        var schema = ToolSchemas.ForRequired(tools);
        Assert.True(JsonNode.DeepEquals(JsonNode.Parse("""{"Point": {"type": "object"}, "Id": {"type": "integer"}}"""), schema["$defs"]), schema.ToJsonString());
        Assert.Null(schema["items"]!["anyOf"]![0]!["properties"]!["parameters"]!["$defs"]);
        Assert.NotNull(tools[0]!["function"]!["parameters"]!["$defs"]);
    }

    [Fact]
    public void Required_refuses_two_different_defs_of_one_name()
    {
        var tools = Tools("""
            [{"type": "function", "function": {"name": "a", "parameters": {"$defs": {"T": {"type": "string"}}}}},
             {"type": "function", "function": {"name": "b", "parameters": {"$defs": {"T": {"type": "integer"}}}}}]
            """);
        var e = Assert.Throws<OpenAIException>(() => ToolSchemas.ForRequired(tools));
        Assert.Equal("Tool definition 'T' has multiple schemas, which is not supported.", e.Message);
    }

    [Fact]
    public void Named_is_the_functions_parameters_or_nothing()
    {
        var tools = Tools("""
            [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}},
             {"type": "function", "function": {"name": "get_time"}}]
            """);
        Assert.True(JsonNode.DeepEquals(tools[0]!["function"]!["parameters"], ToolSchemas.ForNamed(tools, "get_weather")));
        Assert.Null(ToolSchemas.ForNamed(tools, "get_time"));
    }
}
