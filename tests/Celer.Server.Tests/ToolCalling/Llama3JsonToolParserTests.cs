using Celer.Server.ToolCalling;

namespace Celer.Server.Tests.ToolCalling;

/// <summary>The <c>llama3_json</c> format as Llama 3.1–3.3 write it with their own chat template.</summary>
public sealed class Llama3JsonToolParserTests
{
    private static readonly ChatOutputPlan Plan = ParserHarness.Plan(new Llama3JsonToolParser());

    [Theory]
    [InlineData("{\"name\": \"get_weather\", \"parameters\": {\"city\": \"Paris\"}}")]
    [InlineData("{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}")]
    [InlineData("<|python_tag|>{\"name\": \"get_weather\", \"parameters\": {\"city\": \"Paris\"}}")]
    [InlineData("\n\n{\"type\": \"function\", \"name\": \"get_weather\", \"parameters\": {\"city\":\"Paris\"}}\n")]
    public void A_json_call_with_parameters_or_arguments_is_a_tool_call(string text)
    {
        var result = ParserHarness.AssertStreamingMatchesWhole(Plan, text);
        Assert.Null(result.Content);
        ParserHarness.AssertCall(Assert.Single(result.ToolCalls!), "get_weather", "{\"city\": \"Paris\"}");
    }

    [Fact]
    public void Calls_separated_by_semicolons_are_several_calls()
    {
        const string text = "{\"name\": \"get_weather\", \"parameters\": {\"city\": \"Paris\"}}; {\"name\": \"get_time\", \"parameters\": {\"tz\": \"CET\"}}";
        var result = ParserHarness.AssertStreamingMatchesWhole(Plan, text);
        ParserHarness.AssertCall(result.ToolCalls![0], "get_weather", "{\"city\": \"Paris\"}");
        ParserHarness.AssertCall(result.ToolCalls[1], "get_time", "{\"tz\": \"CET\"}");
    }

    [Theory]
    [InlineData("The weather in Paris is mild.")]
    // A JSON answer is not a call: it has no name.
    [InlineData("{\"answer\": 42}")]
    [InlineData("{\"name\": \"get_weather\", \"parameters\": {\"city\": ")]
    [InlineData("{not json at all}")]
    // Calls are read only at the start of the output, as vLLM streams them.
    [InlineData("Sure: {\"name\": \"get_weather\", \"parameters\": {}}")]
    public void Anything_else_is_content_exactly_as_written(string text) => ParserHarness.AssertContentAsWritten(Plan, text);

    [Fact]
    public void Plain_text_streams_the_same_at_every_split()
    {
        var result = ParserHarness.AssertStreamingMatchesWhole(Plan, "  Paris is mild today, 18 C.\n");
        Assert.Equal("  Paris is mild today, 18 C.\n", result.Content);
    }

    [Fact]
    public void Text_after_the_calls_is_content()
    {
        var result = ParserHarness.AssertStreamingMatchesWhole(Plan, "{\"name\": \"f\", \"parameters\": {}}\n\nDone.");
        Assert.Equal("Done.", result.Content);
        ParserHarness.AssertCall(Assert.Single(result.ToolCalls!), "f", "{}");
    }
}
