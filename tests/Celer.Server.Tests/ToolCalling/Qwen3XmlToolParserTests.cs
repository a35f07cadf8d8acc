using System.Text.Json.Nodes;
using Celer.Server.ToolCalling;

namespace Celer.Server.Tests.ToolCalling;

/// <summary>The <c>qwen3_xml</c> format as Qwen3-Coder writes it; values typed by the request's parameter schemas.</summary>
public sealed class Qwen3XmlToolParserTests
{
    private static readonly JsonArray Tools = (JsonArray)JsonNode.Parse("""
        [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object", "properties": {
            "city": {"type": "string"}, "days": {"type": "integer"}, "metric": {"type": "boolean"},
            "ratio": {"type": "number"}, "where": {"type": "object"}, "tags": {"type": "array"},
            "limit": {"type": ["integer", "null"]}, "note": {"description": "no type"}}}}},
         {"type": "function", "function": {"name": "get_time", "parameters": {"type": "object", "properties": {"tz": {"type": "string"}}}}}]
        """)!;

    private static readonly ChatOutputPlan Plan = ParserHarness.Plan(new Qwen3XmlToolParser(ToolParserRegistry.Qwen3Xml), tools: Tools);

    [Fact]
    public void A_call_with_typed_parameters_becomes_a_json_object()
    {
        const string text = "<tool_call>\n<function=get_weather>\n<parameter=city>\nSan Francisco\n</parameter>\n<parameter=days>\n3\n</parameter>\n"
            + "<parameter=metric>\nTrue\n</parameter>\n<parameter=ratio>\n0.5\n</parameter>\n<parameter=where>\n{\"lat\":37.7,\"lon\":-122.4}\n</parameter>\n"
            + "<parameter=tags>\n['a', \"b\"]\n</parameter>\n<parameter=limit>\n10\n</parameter>\n<parameter=note>\nmulti\nline\n</parameter>\n</function>\n</tool_call>";
        var result = ParserHarness.AssertStreamingMatchesWhole(Plan, text);

        Assert.Null(result.Content);
        ParserHarness.AssertCall(Assert.Single(result.ToolCalls!), "get_weather",
            "{\"city\": \"San Francisco\", \"days\": 3, \"metric\": true, \"ratio\": 0.5, \"where\": {\"lat\": 37.7, \"lon\": -122.4}, "
            + "\"tags\": [\"a\", \"b\"], \"limit\": 10, \"note\": \"multi\\nline\"}");
    }

    [Fact]
    public void Vllm_conversions_null_integral_floats_bad_numbers_and_unknown_parameters()
    {
        const string text = "<tool_call>\n<function=get_weather>\n<parameter=city>\nnull\n</parameter>\n<parameter=ratio>\n2.0\n</parameter>\n"
            + "<parameter=days>\nthree\n</parameter>\n<parameter=metric>\nyes\n</parameter>\n<parameter=extra>\n42\n</parameter>\n</function>\n</tool_call>";
        var result = ParserHarness.AssertStreamingMatchesWhole(Plan, text);
        ParserHarness.AssertCall(Assert.Single(result.ToolCalls!), "get_weather",
            "{\"city\": null, \"ratio\": 2, \"days\": \"three\", \"metric\": false, \"extra\": \"42\"}");
    }

    [Fact]
    public void String_values_keep_their_inner_text_and_a_value_that_starts_like_null_is_a_string()
    {
        const string text = "<tool_call>\n<function=get_time>\n<parameter=tz>\nnul \"quoted\" \\ back\n\n</parameter>\n</function>\n</tool_call>";
        var result = ParserHarness.AssertStreamingMatchesWhole(Plan, text);
        ParserHarness.AssertCall(Assert.Single(result.ToolCalls!), "get_time", "{\"tz\": \"nul \\\"quoted\\\" \\\\ back\\n\"}");
    }

    [Fact]
    public void Several_calls_with_content_before_them()
    {
        const string text = "Checking.\n\n<tool_call>\n<function=get_weather>\n<parameter=city>\nOslo\n</parameter>\n</function>\n</tool_call>\n"
            + "<tool_call>\n<function=get_time>\n<parameter=tz>\nCET\n</parameter>\n</function>\n</tool_call>";
        var result = ParserHarness.AssertStreamingMatchesWhole(Plan, text);
        Assert.Equal("Checking.", result.Content);
        ParserHarness.AssertCall(result.ToolCalls![0], "get_weather", "{\"city\": \"Oslo\"}");
        ParserHarness.AssertCall(result.ToolCalls[1], "get_time", "{\"tz\": \"CET\"}");
    }

    [Fact]
    public void A_call_cut_off_by_max_tokens_keeps_what_it_has_and_missing_closing_tags_are_tolerated()
    {
        var cut = ParserHarness.AssertStreamingMatchesWhole(Plan, "<tool_call>\n<function=get_weather>\n<parameter=city>\nPar");
        ParserHarness.AssertCall(Assert.Single(cut.ToolCalls!), "get_weather", "{\"city\": \"Par\"}");

        var unclosed = ParserHarness.AssertStreamingMatchesWhole(Plan, "<tool_call>\n<function=get_weather>\n<parameter=city>\nRome\n<parameter=days>\n2\n</function>\n</tool_call>");
        ParserHarness.AssertCall(Assert.Single(unclosed.ToolCalls!), "get_weather", "{\"city\": \"Rome\", \"days\": 2}");
    }

    [Fact]
    public void Without_schemas_every_value_is_a_string()
    {
        var plan = ParserHarness.Plan(new Qwen3XmlToolParser(ToolParserRegistry.Qwen3Xml));
        var result = ParserHarness.AssertStreamingMatchesWhole(plan, "<tool_call>\n<function=f>\n<parameter=n>\n7\n</parameter>\n</function>\n</tool_call>");
        ParserHarness.AssertCall(Assert.Single(result.ToolCalls!), "f", "{\"n\": \"7\"}");
    }

    [Theory]
    [InlineData("The weather is fine.")]
    [InlineData("<tool_call>\n</tool_call>")]
    [InlineData("<tool_call>\nnot a function\n</tool_call>")]
    [InlineData("<tool_call>\n<function=>\n</function>\n</tool_call>")]
    public void Output_without_a_function_is_content_as_written(string text) => ParserHarness.AssertContentAsWritten(Plan, text);
}
