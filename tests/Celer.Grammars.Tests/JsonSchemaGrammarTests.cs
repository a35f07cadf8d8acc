using System.Text.Json;
using System.Text.Json.Nodes;
using Celer.Grammars.Json;
using Json.Schema;
using Xunit;

namespace Celer.Grammars.Tests;

/// <summary>
/// JSON Schema to grammar, keyword by keyword: texts the grammar must take and texts it must not. Every accepted
/// text is also checked with JsonSchema.Net, the independent validator, so an expectation here cannot itself be wrong
/// in the direction that matters (accepting what the schema forbids). Rejected texts include valid JSON the grammar
/// leaves out on purpose (another property order, "-0", exponents in bounded numbers).
/// </summary>
public partial class JsonSchemaGrammarTests
{
    private static readonly EvaluationOptions Validation = new() { RequireFormatValidation = true };

    public static TheoryData<string, string[], string[]> KeywordCases => new()
    {
        // Types.
        { """{"type": "string"}""", [@"""abc""", @"""""", @"""a\""b\\c\/""", @"""\u00e9\n\t""", @"""é😀中""", @"""\uABCD"""],
            ["abc", @"""a", @"""\x""", "\"a\nb\"", "1", @"""\ud83d\ude00""", "\"\u0001\""] },
        { """{"type": "integer"}""", ["0", "-5", "123", "-0"], ["01", "1.0", "1e3", "+1", "--1", "\"1\"", ""] },
        { """{"type": "number"}""", ["0", "-0.5", "1e10", "1.5E-3", "2E+2", "10"], [".5", "1.", "01", "1e", "-", "1e+", "0x10", "NaN"] },
        { """{"type": "boolean"}""", ["true", "false"], ["True", "1", "null"] },
        { """{"type": "null"}""", ["null"], ["Null", "0", "\"\""] },
        { """{"type": ["string", "null"]}""", ["null", @"""x"""], ["1", "false"] },
        { """{"type": ["integer", "null"], "minimum": 1}""", ["null", "1", "7"], ["0", "-1"] },
        { "{}", ["1", @"{""a"":[true,null,{}]}", @"""s""", "[]"], ["", "{", "[1,]", "nul"] },
        { "true", ["1", "[[]]", @"{""x"":""y""}"], ["}"] },

        // Integer ranges: digit-range construction, both signs, exclusive bounds, no "-0".
        { """{"type": "integer", "minimum": 10, "maximum": 1000}""", ["10", "99", "100", "999", "1000", "567"], ["9", "1001", "10.0", "-10", "0010", "5000"] },
        { """{"type": "integer", "exclusiveMinimum": 0, "exclusiveMaximum": 10}""", ["1", "9"], ["0", "10", "-1"] },
        { """{"type": "integer", "minimum": -150, "maximum": -7}""", ["-150", "-7", "-99", "-100"], ["-6", "-151", "7", "-0", "-200"] },
        { """{"type": "integer", "minimum": -5, "maximum": 5}""", ["-5", "0", "5", "-1"], ["-6", "6", "-0", "05"] },
        { """{"type": "integer", "minimum": 1.5, "maximum": 3.5}""", ["2", "3"], ["1", "4"] },
        { """{"type": "integer", "minimum": 123}""", ["123", "999", "1000", "123456789012345678901234567890"], ["122", "0", "-124"] },
        { """{"type": "integer", "maximum": -3}""", ["-3", "-4", "-10", "-99999999999999999999"], ["-2", "0", "3"] },
        { """{"type": "integer", "multipleOf": 1}""", ["7", "-7"], ["7.5"] },

        // Decimal ranges: exact at the bounds, any number of digits after the point, no exponent.
        { """{"type": "number", "minimum": 0.5, "maximum": 2.25}""", ["0.5", "0.50", "1", "1.999999", "2", "2.25", "2.2", "2.250"],
            ["0.49", "0.4999999", "2.26", "2.251", "2.2500001", "3", "0", "1e0", "-1"] },
        { """{"type": "number", "exclusiveMinimum": 0}""", ["0.0001", "5", "0.1", "123.456"], ["0", "0.0", "0.000", "-1", "-0.5"] },
        { """{"type": "number", "minimum": -0.001, "maximum": 1000}""", ["-0.001", "-0.0009", "0", "999.99", "1000", "1000.0"], ["-0.0011", "-0.01", "1000.01", "-1"] },
        { """{"type": "number", "exclusiveMinimum": -1.5, "exclusiveMaximum": 2.5}""", ["-1.4", "-1", "0", "2.49999"], ["-1.5", "2.5", "2.50", "-2", "3"] },
        { """{"type": "number", "minimum": 1e-7, "maximum": 2e-7}""", ["0.0000001", "0.00000015", "0.0000002"], ["0.00000009", "0.00000021", "0"] },
        { """{"type": "number", "minimum": 0, "multipleOf": 0.01}""", ["1.25", "3", "0.1", "0"], ["1.255", "-1", "0.001"] },
        { """{"type": "number", "multipleOf": 0.5}""", ["3", "-2"], ["2.5", "0.1"] },
        { """{"type": "number", "multipleOf": 0.05, "maximum": 1}""", ["0.5", "1", "-3"], ["0.55", "1.1"] },

        // Strings: lengths in code points (an escape is one), patterns unanchored unless anchored, no escapes in them.
        { """{"type": "string", "minLength": 2, "maxLength": 3}""", [@"""ab""", @"""abc""", @"""é😀""", @"""\n\t""", @"""\u0041bc"""], [@"""a""", @"""abcd""", @"""😀"""] },
        { """{"type": "string", "pattern": "^[a-z]+$"}""", [@"""abc"""], [@"""abC""", @"""""", @"""a1"""] },
        { """{"type": "string", "pattern": "ab"}""", [@"""xxabyy""", @"""ab"""], [@"""axb""", @"""a"""] },
        { """{"type": "string", "pattern": "^a\"?b$"}""", [@"""ab"""], [@"""a\""b"""] },
        { """{"type": "string", "pattern": "^[a-z]{3}$", "minLength": 3, "maxLength": 3}""", [@"""abc"""], [@"""ab"""] },
        { """{"minLength": 1}""", [@"""a"""], [@"""""", "1"] },

        // Formats.
        { """{"type": "string", "format": "date"}""", [@"""2024-02-29""", @"""2000-02-29""", @"""2023-12-31""", @"""2023-04-30"""],
            [@"""2023-02-29""", @"""1900-02-29""", @"""2023-13-01""", @"""2023-04-31""", @"""2023-1-01""", @"""0000-01-01"""] },
        { """{"type": "string", "format": "date-time"}""", [@"""2024-01-01T12:30:00Z""", @"""2024-01-01T23:59:59.123+05:30"""],
            [@"""2024-01-01 12:30:00Z""", @"""2024-01-01T24:00:00Z""", @"""2024-01-01T12:30:00""", @"""2024-01-01T12:60:00Z"""] },
        { """{"type": "string", "format": "time"}""", [@"""00:00:00Z""", @"""23:59:59.9-07:00"""], [@"""24:00:00Z""", @"""12:00Z"""] },
        { """{"type": "string", "format": "email"}""", [@"""john.doe@example.com""", @"""a+b@x.co"""], [@"""john@""", @"""@x.com""", @"""a..b@x.com""", @"""a@b"""] },
        { """{"type": "string", "format": "uuid"}""", [@"""123e4567-e89b-12d3-a456-426614174000"""], [@"""123e4567e89b12d3a456426614174000""", @"""123e4567-e89b-12d3-a456-42661417400g"""] },
        { """{"type": "string", "format": "ipv4"}""", [@"""192.168.0.1""", @"""0.0.0.0""", @"""255.255.255.255"""], [@"""256.1.1.1""", @"""01.1.1.1""", @"""1.1.1"""] },
        { """{"type": "string", "format": "ipv6"}""", [@"""2001:db8:0:0:0:0:0:1"""], [@"""2001:db8::1::2"""] },
        { """{"type": "string", "format": "hostname"}""", [@"""api.example.com""", @"""localhost"""], [@"""-bad.com""", @"""a..b"""] },
        { """{"type": "string", "format": "uri"}""", [@"""https://example.com/a/b?x=1#top""", @"""http://localhost:8080/"""], [@"""example.com""", @"""https://ex ample.com"""] },
        { """{"type": "string", "format": "no-such-format"}""", [@"""anything at all"""], ["1"] },

        // enum and const: canonical JSON, layout inside containers per options.
        { """{"enum": ["a", 1, null, {"x": [1, 2]}, true, 2.50]}""", [@"""a""", "1", "null", @"{""x"":[1,2]}", @"{ ""x"" : [ 1 , 2 ] }", "true", "2.50"], [@"""b""", "2", "false", "2.5"] },
        { """{"const": "a\"b"}""", [@"""a\""b"""], [@"""a""b""", @"""ab"""] },
        { """{"type": "integer", "enum": [1, 2.5, "3"]}""", ["1"], ["2.5", @"""3"""] },
        { """{"const": "x", "enum": ["x", "y"]}""", [@"""x"""], [@"""y"""] },

        // Objects: schema order, any subset of optional properties, commas right.
        { """{"type": "object", "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}, "c": {"type": "integer"}}, "required": ["b"]}""",
            [@"{""b"":1}", @"{""a"":1,""b"":2}", @"{""b"":1,""c"":3}", @"{""a"":1,""b"":2,""c"":3}", @"{ ""a"" : 1 , ""b"" : 2 }"],
            ["{}", @"{""a"":1}", @"{""b"":1,""a"":2}", @"{""a"":1,,""b"":2}", @"{""b"":1,}", @"{""d"":1,""b"":1}", @"{,""b"":1}"] },
        { """{"properties": {"a": {"type": "integer"}, "b": {"type": "integer"}, "c": {"type": "integer"}}}""",
            ["{}", @"{""a"":1}", @"{""c"":1}", @"{""a"":1,""c"":1}", @"{""b"":1,""c"":1}", "{ }"], [@"{,}", @"{""a"":1,}", @"{""z"":1}", @"{""c"":1,""a"":1}"] },
        { """{"properties": {"a": {"type": "integer"}}, "additionalProperties": true}""",
            [@"{""a"":1,""zz"":""x""}", @"{""zz"":1}", @"{""ab"":1}", @"{""b"":[1]}", @"{""a"":1,""x"":1,""y"":2}"],
            [@"{""a"":1,""a"":2}", @"{""zz"":1,""a"":1}", @"{""a"":""s""}"] },
        { """{"additionalProperties": {"type": "integer"}}""", [@"{""x"":1,""y"":2}", "{}", @"{""a\""b"":3}"], [@"{""x"":""s""}"] },
        { """{"properties": {"a": {"type": "integer"}}}""", [@"{""a"":1}"], [@"{""a"":1,""b"":2}"] },
        { """{"type": "object"}""", ["{}", @"{""a"":{""b"":[1,""x""]}}"], ["[]", "null"] },
        { """{"properties": {"a": {"type": "integer"}}, "required": ["a", "z"]}""", [@"{""a"":1,""z"":[true]}"], [@"{""a"":1}", @"{""z"":1,""a"":1}"] },
        { """{"properties": {"a": {"type": "integer"}, "b": false}, "additionalProperties": {"type": "string"}}""", [@"{""a"":1,""c"":""x""}"], [@"{""a"":1,""b"":""x""}", @"{""b"":1}"] },
        { """{"properties": {"a": true}, "required": ["a"], "minProperties": 1, "maxProperties": 1}""", [@"{""a"":1}"], ["{}"] },

        // Arrays.
        { """{"type": "array", "items": {"type": "integer"}, "minItems": 1, "maxItems": 3}""", ["[1]", "[1,2,3]", "[ 1 , 2 ]"], ["[]", "[1,2,3,4]", "[1,]", @"[""a""]"] },
        { """{"type": "array"}""", ["[]", @"[1,""a"",{}]"], ["[1,]"] },
        { """{"prefixItems": [{"type": "string"}, {"type": "integer"}]}""", [@"[""a"",1]", "[]", @"[""a""]"], [@"[""a"",1,2]", @"[1,""a""]"] },
        { """{"prefixItems": [{"type": "string"}, {"type": "integer"}], "minItems": 2, "items": {"type": "boolean"}}""", [@"[""a"",1]", @"[""a"",1,true,false]"], [@"[""a""]", @"[""a"",1,2]"] },
        { """{"type": "array", "items": false}""", ["[]"], ["[1]"] },
        { """{"$schema": "http://json-schema.org/draft-07/schema#", "type": "array", "items": [{"const": 1}, {"const": 2}], "additionalItems": {"type": "string"}}""", ["[1,2]", @"[1,2,""x""]", "[1]"], ["[1,2,3]", "[2]"] },
        { """{"type": "array", "prefixItems": [{"type": "integer"}, false]}""", ["[1]", "[]"], ["[1,2]"] },
        { """{"type": "array", "maxItems": 1, "uniqueItems": true}""", ["[]", "[1]"], ["[1,2]"] },

        // anyOf, oneOf, allOf, $ref.
        { """{"anyOf": [{"type": "string"}, {"type": "integer"}]}""", [@"""x""", "1"], ["true", "1.5"] },
        { """{"oneOf": [{"type": "string"}, {"type": "integer"}]}""", [@"""x""", "1"], ["true"] },
        { """{"oneOf": [{"type": "object", "properties": {"kind": {"const": "a"}, "x": {"type": "integer"}}, "required": ["kind"]}, {"type": "object", "properties": {"kind": {"const": "b"}}, "required": ["kind"]}]}""",
            [@"{""kind"":""a"",""x"":1}", @"{""kind"":""b""}"], [@"{""kind"":""c""}", @"{""x"":1}"] },
        { """{"type": "object", "properties": {"n": {"type": "integer"}}, "anyOf": [{"required": ["n"]}, {"properties": {"m": {"type": "string"}}, "required": ["m"]}]}""",
            [@"{""n"":1}", @"{""m"":""x""}", @"{""n"":1,""m"":""x""}"], ["{}", @"{""n"":""x""}"] },
        { """{"allOf": [{"properties": {"a": {"type": "integer"}}, "required": ["a"]}, {"properties": {"b": {"type": "string"}}, "required": ["b"]}]}""",
            [@"{""a"":1,""b"":""x""}"], [@"{""a"":1}", @"{""b"":""x""}", @"{""b"":""x"",""a"":1}"] },
        { """{"allOf": [{"type": "integer", "minimum": 0}, {"maximum": 10}, {"exclusiveMaximum": 5}]}""", ["0", "4"], ["5", "-1", "10"] },
        { """{"allOf": [{"properties": {"a": {"type": "integer"}}, "additionalProperties": false}, {"properties": {"a": {"minimum": 5}, "b": {"type": "string"}}}]}""",
            [@"{""a"":5}", "{}"], [@"{""a"":4}", @"{""a"":5,""b"":""x""}"] },
        { """{"allOf": [{"type": ["integer", "string"]}, {"type": ["number", "null"]}]}""", ["3"], ["3.5", "null", @"""x"""] },
        { """{"$ref": "#/$defs/pos", "maximum": 3, "$defs": {"pos": {"type": "integer", "minimum": 1}}}""", ["1", "3"], ["0", "4"] },
        { """{"$defs": {"n": {"type": "integer"}}, "type": "object", "properties": {"x": {"$ref": "#/$defs/n"}, "y": {"$ref": "#/definitions/s"}}, "definitions": {"s": {"type": "string"}}}""",
            [@"{""x"":1,""y"":""s""}"], [@"{""x"":""s""}"] },
        { """{"type": "object", "properties": {"next": {"$ref": "#"}, "v": {"type": "integer"}}, "required": ["v"]}""",
            [@"{""v"":1}", @"{""next"":{""next"":{""v"":3},""v"":2},""v"":1}"], [@"{""next"":{},""v"":1}"] },
        { """{"type": "array", "items": {"$ref": "#/$defs/a~1b~0c"}, "$defs": {"a/b~c": {"type": "integer"}}}""", ["[1,2]"], [@"[""x""]"] },
        { """{"properties": {"p": {"$ref": "#/$defs/with%20space"}}, "$defs": {"with space": {"const": 7}}}""", [@"{""p"":7}"], [@"{""p"":8}"] },
        { """{"$id": "https://example.com/s.json", "properties": {"a": {"$ref": "https://example.com/s.json#/$defs/x"}}, "$defs": {"x": {"type": "integer"}}}""",
            [@"{""a"":1}"], [@"{""a"":""x""}"] },

        // Annotations and unknown keywords are ignored.
        { """{"type": "integer", "title": "T", "description": "d", "default": 3, "examples": [1], "$comment": "c", "deprecated": true, "readOnly": true, "writeOnly": false, "$id": "x", "x-vendor": 1, "nullable": true}""",
            ["3"], ["null", "1.5"] },
    };

    [Theory]
    [MemberData(nameof(KeywordCases))]
    public void Keyword_accepts_and_rejects(string schema, string[] accepted, string[] rejected)
    {
        var automaton = Automaton(schema);
        var validator = Validators.FromText(schema);
        foreach (string text in accepted)
        {
            Assert.True(automaton.Matches(text), $"{schema} should accept {text}");
            Assert.True(IsValid(validator, text), $"test error: {text} is not valid for {schema}");
        }

        foreach (string text in rejected)
        {
            Assert.False(automaton.Matches(text), $"{schema} should reject {text}");
        }
    }

    [Fact]
    public void Any_whitespace_is_allowed_between_tokens_and_bounded_by_max_whitespace()
    {
        const string Schema = """{"type": "object", "properties": {"a": {"type": "array"}, "b": {"type": "integer"}}}""";
        var any = Automaton(Schema);
        Assert.True(any.Matches("{ \"a\" :\t[ 1 ,\r\n 2 ] ,\n\"b\":3 }"));
        Assert.True(any.Matches("{\"a\":[],\"b\":3}"));
        Assert.False(any.Matches(" {\"b\":3}"));
        Assert.False(any.Matches("{\"b\" \u00a0: 3}"));

        var bounded = Automaton(Schema, new JsonGrammarOptions { MaxWhitespace = 2 });
        Assert.True(bounded.Matches("{  \"b\":  3}"));
        Assert.False(bounded.Matches("{   \"b\":3}"));
    }

    [Fact]
    public void Compact_layout_is_python_json_dumps_default()
    {
        var compact = Automaton("""{"type": "object", "properties": {"a": {"type": "array"}, "b": {"type": "object"}, "c": {"const": {"x": [1, 2]}}}}""",
            new JsonGrammarOptions { AnyWhitespace = false });
        Assert.True(compact.Matches("""{"a": [1, 2], "b": {"k": null}, "c": {"x": [1, 2]}}"""));
        Assert.True(compact.Matches("""{"a": [], "b": {}}"""));
        Assert.False(compact.Matches("""{"a":[1, 2]}"""));
        Assert.False(compact.Matches("""{"a": [1,2]}"""));
        Assert.False(compact.Matches("""{ "a": []}"""));
        Assert.False(compact.Matches("""{"a": [ ]}"""));
        Assert.False(compact.Matches("""{"c": {"x":[1, 2]}}"""));
    }

    [Fact]
    public void Whitespace_pattern_is_matched_between_tokens_and_kept_to_json_whitespace()
    {
        var pattern = Automaton("""{"type": "object", "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}}}""",
            new JsonGrammarOptions { WhitespacePattern = "[ ]?", AnyWhitespace = false });
        Assert.True(pattern.Matches("""{ "a" : 1 , "b" : 2 }"""));
        Assert.True(pattern.Matches("""{"a":1,"b":2}"""));
        Assert.False(pattern.Matches("""{  "a":1}"""));
        Assert.False(pattern.Matches("{\n\"a\":1}"));

        // A pattern allowing other characters still yields JSON: only its whitespace survives.
        var loose = Automaton("""{"type": "array"}""", new JsonGrammarOptions { WhitespacePattern = "[ x]*" });
        Assert.True(loose.Matches("[ 1 ,  2 ]"));
        Assert.False(loose.Matches("[x1]"));
    }

    [Fact]
    public void Disable_additional_properties_closes_open_objects()
    {
        const string Schema = """{"properties": {"a": {"type": "integer"}}, "additionalProperties": true, "required": ["a"]}""";
        Assert.True(Automaton(Schema).Matches("""{"a":1,"b":2}"""));
        var closed = Automaton(Schema, new JsonGrammarOptions { DisableAdditionalProperties = true });
        Assert.True(closed.Matches("""{"a":1}"""));
        Assert.False(closed.Matches("""{"a":1,"b":2}"""));
    }

    [Fact]
    public void Any_json_object_accepts_objects_only()
    {
        var automaton = GrammarAutomaton.Compile(JsonSchemaGrammar.AnyJsonObject(new JsonGrammarOptions()));
        Assert.True(automaton.Matches("""{"a": [1, {"b": null}], "c": "\u00e9"}"""));
        Assert.True(automaton.Matches("{}"));
        Assert.False(automaton.Matches("[1]"));
        Assert.False(automaton.Matches("\"x\""));
        Assert.False(automaton.Matches("""{"a" 1}"""));
    }

    [Fact]
    public void Format_gives_way_to_length_bounds_it_does_not_imply()
    {
        // format is an annotation (2020-12): with maxLength beside it, the bound is kept and the format left.
        const string Schema = """{"type": "string", "format": "email", "maxLength": 5}""";
        var automaton = Automaton(Schema);
        Assert.True(automaton.Matches("\"a b\""));
        Assert.False(automaton.Matches("\"abcdef\""));
        Assert.True(IsValid(Validators.FromText(Schema), "\"a b\"", new EvaluationOptions()));

        // A format within the bounds keeps its grammar.
        Assert.False(Automaton("""{"type": "string", "format": "date", "minLength": 10, "maxLength": 10}""").Matches("\"abcdefghij\""));
    }

    [Fact]
    public void Shared_schemas_compile_to_one_rule()
    {
        var grammar = JsonSchemaGrammar.Compile(JsonNode.Parse("""
            {"type": "object", "properties": {
              "a": {"type": "string", "maxLength": 5}, "b": {"type": "string", "maxLength": 5},
              "c": {"$ref": "#/$defs/p"}, "d": {"$ref": "#/$defs/p"}, "e": {"type": "string"}, "f": {"type": "string"}},
             "$defs": {"p": {"type": "object", "properties": {"x": {"type": "integer"}}}}}
            """)!, new JsonGrammarOptions());
        Assert.Single(grammar.Rules, r => r.Name == "/$defs/p");
        Assert.Single(grammar.Rules, r => r.Name.StartsWith("/properties/", StringComparison.Ordinal));
        Assert.Single(grammar.Rules, r => r.Name == "json-string");
    }

    private static GrammarAutomaton Automaton(string schema, JsonGrammarOptions? options = null) =>
        GrammarAutomaton.Compile(JsonSchemaGrammar.Compile(JsonNode.Parse(schema)!, options ?? new JsonGrammarOptions()));

    private static bool IsValid(JsonSchema validator, string text, EvaluationOptions? options = null)
    {
        using var document = JsonDocument.Parse(text);
        return validator.Evaluate(document.RootElement, options ?? Validation).IsValid;
    }
}
