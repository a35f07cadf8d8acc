using System.Text.Json.Nodes;
using Celer.Grammars.Json;
using Xunit;

namespace Celer.Grammars.Tests;

/// <summary>Every refusal is a GrammarException whose message names the keyword and where it is.</summary>
public partial class JsonSchemaGrammarTests
{
    public static TheoryData<string, string, string> RefusedCases => new()
    {
        // Keywords no grammar here follows.
        { """{"properties": {"a": {"not": {"type": "string"}}}}""", "not", "/properties/a" },
        { """{"if": {"type": "string"}, "then": {"minLength": 1}}""", "if", "the root" },
        { """{"then": {"minLength": 1}}""", "then", "the root" },
        { """{"else": {"minLength": 1}}""", "else", "the root" },
        { """{"type": "object", "patternProperties": {"^x": {}}}""", "patternProperties", "the root" },
        { """{"type": "object", "propertyNames": {"maxLength": 3}}""", "propertyNames", "the root" },
        { """{"type": "object", "dependentRequired": {"a": ["b"]}}""", "dependentRequired", "the root" },
        { """{"type": "object", "dependentSchemas": {"a": {}}}""", "dependentSchemas", "the root" },
        { """{"type": "object", "dependencies": {"a": ["b"]}}""", "dependencies", "the root" },
        { """{"type": "object", "unevaluatedProperties": false}""", "unevaluatedProperties", "the root" },
        { """{"type": "array", "unevaluatedItems": false}""", "unevaluatedItems", "the root" },
        { """{"type": "array", "contains": {"type": "integer"}}""", "contains", "the root" },
        { """{"type": "array", "minContains": 2}""", "minContains", "the root" },
        { """{"type": "array", "maxContains": 2}""", "maxContains", "the root" },
        { """{"$defs": {"x": {"$dynamicRef": "#node"}}, "properties": {"a": {"$ref": "#/$defs/x"}}}""", "$dynamicRef", "/$defs/x" },
        { """{"$dynamicAnchor": "node"}""", "$dynamicAnchor", "the root" },
        { """{"$recursiveRef": "#"}""", "$recursiveRef", "the root" },
        { """{"$recursiveAnchor": true}""", "$recursiveAnchor", "the root" },
        { """{"type": "array", "items": {"type": "object", "properties": {"x": {"not": {}}}}}""", "not", "/items/properties/x" },
        { """{"properties": {"a/b": {"properties": {"c~d": {"if": {}}}}}}""", "if", "/properties/a~1b/properties/c~0d" },

        // Keywords followed only where they are trivially met.
        { """{"type": "array", "uniqueItems": true}""", "uniqueItems", "the root" },
        { """{"type": "object", "properties": {"a": {}}, "minProperties": 1}""", "minProperties", "the root" },
        { """{"type": "object", "additionalProperties": true, "maxProperties": 3}""", "maxProperties", "the root" },
        { """{"type": "integer", "multipleOf": 2}""", "multipleOf", "the root" },
        { """{"type": "number", "multipleOf": 0.3}""", "multipleOf", "the root" },
        { """{"type": "number", "multipleOf": 10}""", "multipleOf", "the root" },
        { """{"oneOf": [{"type": "integer"}, {"type": "number"}]}""", "oneOf", "the root" },
        { """{"oneOf": [{"type": "object", "properties": {"a": {}}}, {"type": "object", "properties": {"b": {}}}]}""", "oneOf", "the root" },
        { """{"properties": {"x": {"oneOf": [{"const": 1}, {"enum": [2, 1.0]}]}}}""", "oneOf", "/properties/x" },
        { """{"allOf": [{"type": "string", "pattern": "a"}, {"pattern": "b"}]}""", "pattern", "the root" },
        { """{"allOf": [{"anyOf": [{"type": "string"}]}, {"oneOf": [{"type": "string"}]}]}""", "oneOf", "the root" },
        { """{"anyOf": [{"type": "string"}], "oneOf": [{"type": "string"}]}""", "oneOf", "the root" },
        { """{"allOf": [{"prefixItems": [{}]}, {"prefixItems": [{}, {}]}]}""", "prefixItems", "the root" },
        { """{"$defs": {"a": {"allOf": [{"$ref": "#/$defs/a"}]}}, "properties": {"p": {"$ref": "#/$defs/a"}}}""", "allOf", "/$defs/a" },
        { """{"type": "string", "pattern": "^[a-z]+$", "maxLength": 5}""", "maxLength", "the root" },
        { """{"type": "string", "pattern": "^[a-z]{2}$", "minLength": 3}""", "minLength", "the root" },
        { """{"type": "string", "enum": ["a", "bb"], "minLength": 2}""", "minLength", "the root" },

        // References.
        { """{"properties": {"a": {"$ref": "other.json#/x"}}}""", "$ref", "/properties/a" },
        { """{"properties": {"a": {"$ref": "#anchor"}}}""", "$ref", "/properties/a" },
        { """{"properties": {"a": {"$ref": "#/$defs/missing"}}}""", "$ref", "/properties/a" },
        { """{"properties": {"a": {"$id": "sub.json", "properties": {"b": {"$ref": "#/$defs/x"}}}}, "$defs": {"x": {}}}""", "$ref", "/properties/a/properties/b" },
        { """{"allOf": [{"$id": "sub.json", "properties": {"b": {"$ref": "#/$defs/x"}}}], "$defs": {"x": {}}}""", "$ref", "/allOf/0" },
        { """{"anyOf": [{"$ref": "#"}, {"type": "null"}]}""", "$ref", "/anyOf/0" },
        { """{"$defs": {"a": {"$ref": "#/$defs/b"}, "b": {"anyOf": [{"$ref": "#/$defs/a"}, {"type": "null"}]}}, "$ref": "#/$defs/a"}""", "$ref", "/$defs/b/anyOf/0" },

        // Contradictions and malformed values.
        { """{"type": "string", "minLength": 5, "maxLength": 2}""", "minLength", "the root" },
        { """{"type": "integer", "minimum": 5, "maximum": 2}""", "minimum", "the root" },
        { """{"type": "integer", "exclusiveMinimum": 1, "exclusiveMaximum": 2}""", "exclusiveMinimum", "the root" },
        { """{"type": "number", "minimum": 5, "exclusiveMaximum": 5}""", "minimum", "the root" },
        { """{"type": "array", "prefixItems": [{}], "minItems": 2}""", "minItems", "the root" },
        { """{"type": "object", "properties": {"a": false}, "required": ["a"]}""", "required", "the root" },
        { """{"type": "object", "properties": {"a": {}}, "required": ["b"], "additionalProperties": false}""", "required", "the root" },
        { """{"type": "strin"}""", "type", "the root" },
        { """{"type": "string", "maxLength": -1}""", "maxLength", "the root" },
        { """{"type": "number", "minimum": "0"}""", "minimum", "the root" },
        { """{"type": "number", "exclusiveMinimum": true, "minimum": 0}""", "exclusiveMinimum", "the root" },
        { """{"required": "a"}""", "required", "the root" },
        { """{"anyOf": []}""", "anyOf", "the root" },
        { """{"enum": 1}""", "enum", "the root" },
        { """{"properties": []}""", "properties", "the root" },
        { """{"additionalProperties": 1}""", "additionalProperties", "the root" },
        { """{"items": "x"}""", "items", "the root" },
        { """{"$ref": 1}""", "$ref", "the root" },
        { """{"type": "array", "uniqueItems": "yes"}""", "uniqueItems", "the root" },
        { """{"type": "number", "multipleOf": 0}""", "multipleOf", "the root" },
        { """{"required": [1]}""", "required", "the root" },
        { """{"type": "integer", "maximum": 1e500}""", "maximum", "the root" },
        { """{"allOf": [{"$ref": "x.json"}]}""", "$ref", "/allOf/0" },
        { """{"allOf": [{"$ref": "#/nope"}]}""", "$ref", "/allOf/0" },
        { """{"type": "string", "pattern": "[a-"}""", "pattern", "the root" },
        { """{"type": "string", "pattern": "^\"+$"}""", "pattern", "the root" },
    };

    [Theory]
    [MemberData(nameof(RefusedCases))]
    public void Refusal_names_the_keyword_and_where(string schema, string keyword, string where)
    {
        var error = Assert.Throws<GrammarException>(() => JsonSchemaGrammar.Compile(JsonNode.Parse(schema)!, new JsonGrammarOptions()));
        Assert.Contains($"'{keyword}'", error.Message, StringComparison.Ordinal);
        Assert.Contains($" at {where} ", error.Message, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("""{"properties": {"a": 1}}""", "/properties/a")]
    [InlineData("""{"allOf": [{}, "x"]}""", "/allOf/1")]
    [InlineData("3", "the root")]
    public void A_schema_that_is_not_an_object_or_boolean_is_refused_where_it_is(string schema, string where)
    {
        var error = Assert.Throws<GrammarException>(() => JsonSchemaGrammar.Compile(JsonNode.Parse(schema)!, new JsonGrammarOptions()));
        Assert.Contains($" at {where} ", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Bad_whitespace_options_are_refused()
    {
        var schema = JsonNode.Parse("""{"type": "array"}""")!;
        Assert.Contains("whitespace_pattern", Assert.Throws<GrammarException>(() => JsonSchemaGrammar.Compile(schema, new JsonGrammarOptions { WhitespacePattern = "[ " })).Message, StringComparison.Ordinal);
        Assert.Contains("matches no run of JSON whitespace", Assert.Throws<GrammarException>(() => JsonSchemaGrammar.Compile(schema, new JsonGrammarOptions { WhitespacePattern = "x+" })).Message, StringComparison.Ordinal);
        Assert.Throws<ArgumentOutOfRangeException>(() => JsonSchemaGrammar.Compile(schema, new JsonGrammarOptions { MaxWhitespace = -1 }));
    }

    [Fact]
    public void A_schema_that_accepts_nothing_is_refused()
    {
        var error = Assert.Throws<GrammarException>(() => JsonSchemaGrammar.Compile(JsonNode.Parse("false")!, new JsonGrammarOptions()));
        Assert.Contains("accepts no value", error.Message, StringComparison.Ordinal);
        Assert.Throws<GrammarException>(() => JsonSchemaGrammar.Compile(JsonNode.Parse("""{"enum": [1], "type": "string"}""")!, new JsonGrammarOptions()));
    }
}
