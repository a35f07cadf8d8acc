using Celer.Server.ToolCalling;

namespace Celer.Server.Tests.ToolCalling;

/// <summary>The <c>mistral</c> format: <c>[TOOL_CALLS]</c> then a JSON array (v0.3) or <c>name[ARGS]{...}</c> (tekken v11).</summary>
public sealed class MistralToolParserTests
{
    private static readonly ChatOutputPlan Plan = ParserHarness.Plan(new MistralToolParser());

    [Fact]
    public void An_array_of_calls_after_the_marker_is_tool_calls_with_nine_character_ids()
    {
        const string text = "[TOOL_CALLS] [{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}, {\"name\": \"get_time\", \"arguments\": {}}]";
        var result = ParserHarness.AssertStreamingMatchesWhole(Plan, text);

        Assert.Null(result.Content);
        ParserHarness.AssertCall(result.ToolCalls![0], "get_weather", "{\"city\": \"Paris\"}");
        ParserHarness.AssertCall(result.ToolCalls[1], "get_time", "{}");
        foreach (var call in result.ToolCalls)
            Assert.Matches("^[A-Za-z0-9]{9}$", call.Id);
    }

    [Fact]
    public void Tekken_v11_calls_name_then_args()
    {
        const string text = "[TOOL_CALLS]get_weather[ARGS]{\"city\": \"Paris\"}[TOOL_CALLS]get_time[ARGS]{}";
        var result = ParserHarness.AssertStreamingMatchesWhole(Plan, text);
        ParserHarness.AssertCall(result.ToolCalls![0], "get_weather", "{\"city\": \"Paris\"}");
        ParserHarness.AssertCall(result.ToolCalls[1], "get_time", "{}");
    }

    [Fact]
    public void Text_before_the_marker_is_content()
    {
        const string text = "I'll look it up. [TOOL_CALLS][{\"name\": \"search\", \"arguments\": {\"q\": \"[TOOL_CALLS]\"}}]";
        var result = ParserHarness.AssertStreamingMatchesWhole(Plan, text);
        Assert.Equal("I'll look it up.", result.Content);
        ParserHarness.AssertCall(Assert.Single(result.ToolCalls!), "search", "{\"q\": \"[TOOL_CALLS]\"}");
    }

    [Theory]
    [InlineData("Paris is mild. [TOOL_")]
    [InlineData("[TOOL_CALLS] [{\"name\": \"f\", \"arguments\": {\"a\": 1}")]
    [InlineData("[TOOL_CALLS] not a call")]
    [InlineData("[TOOL_CALLS]")]
    [InlineData("[TOOL_CALLS]bad name[ARGS]{}")]
    public void Malformed_or_missing_calls_are_content_as_written(string text) => ParserHarness.AssertContentAsWritten(Plan, text);
}
