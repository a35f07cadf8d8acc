using Celer.Server.ToolCalling;

namespace Celer.Server.Tests.ToolCalling;

/// <summary>The <c>hermes</c> format as Qwen2.5/Qwen3 and Hermes 2 Pro write it, whole and streamed at every split.</summary>
public sealed class HermesToolParserTests
{
    private static readonly ChatOutputPlan Plan = ParserHarness.Plan(new HermesToolParser());

    [Fact]
    public void One_call_is_a_tool_call_with_no_content()
    {
        const string text = "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\", \"unit\": \"celsius\"}}\n</tool_call>";
        var result = ParserHarness.AssertStreamingMatchesWhole(Plan, text);

        Assert.Null(result.Content);
        var call = Assert.Single(result.ToolCalls!);
        ParserHarness.AssertCall(call, "get_weather", "{\"city\": \"Paris\", \"unit\": \"celsius\"}");
        Assert.StartsWith("chatcmpl-tool-", call.Id, StringComparison.Ordinal);
        Assert.Equal("chatcmpl-tool-".Length + 32, call.Id.Length);
    }

    [Fact]
    public void Text_before_and_between_calls_is_content_without_the_newlines_around_the_tags()
    {
        const string text = "Let me check both.\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n</tool_call>\n"
            + "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Oslo\"}}\n</tool_call>";
        var result = ParserHarness.AssertStreamingMatchesWhole(Plan, text);

        Assert.Equal("Let me check both.", result.Content);
        Assert.Equal(2, result.ToolCalls!.Count);
        ParserHarness.AssertCall(result.ToolCalls[0], "get_weather", "{\"city\": \"Paris\"}");
        ParserHarness.AssertCall(result.ToolCalls[1], "get_weather", "{\"city\": \"Oslo\"}");
        Assert.NotEqual(result.ToolCalls[0].Id, result.ToolCalls[1].Id);
    }

    [Fact]
    public void Arguments_are_respaced_as_json_dumps_writes_them_with_strings_kept_as_written()
    {
        const string text = "<tool_call>{\"name\":\"run\",\"arguments\":{\"code\":\"print(\\\"}{\\\")\\n\",\"n\":[1,2.5e3,-0],\"ok\":true,\"x\":null,\"s\":\"Zürich \\u00e9\"}}</tool_call>";
        var result = ParserHarness.AssertStreamingMatchesWhole(Plan, text);

        ParserHarness.AssertCall(Assert.Single(result.ToolCalls!), "run",
            "{\"code\": \"print(\\\"}{\\\")\\n\", \"n\": [1, 2.5e3, -0], \"ok\": true, \"x\": null, \"s\": \"Zürich \\u00e9\"}");
    }

    [Fact]
    public void The_name_may_follow_the_arguments_and_other_keys_are_ignored()
    {
        const string text = "<tool_call>\n{\"type\": \"function\", \"arguments\": {\"q\": \"a b\"}, \"name\": \"search\"}\n</tool_call>";
        var result = ParserHarness.AssertStreamingMatchesWhole(Plan, text);
        ParserHarness.AssertCall(Assert.Single(result.ToolCalls!), "search", "{\"q\": \"a b\"}");
    }

    [Fact]
    public void A_call_without_arguments_gets_an_empty_object_and_an_unclosed_last_call_counts()
    {
        const string text = "<tool_call>\n{\"name\": \"get_time\"}\n</tool_call>\n<tool_call>\n{\"name\": \"get_date\", \"arguments\": {}}";
        var result = ParserHarness.AssertStreamingMatchesWhole(Plan, text);
        ParserHarness.AssertCall(result.ToolCalls![0], "get_time", "{}");
        ParserHarness.AssertCall(result.ToolCalls[1], "get_date", "{}");
    }

    [Theory]
    [InlineData("The answer is 4.\n")]
    [InlineData("")]
    [InlineData("Write <tool_call> tags around JSON when you call a tool.")]
    [InlineData("a < b and <tool_ is not a tag")]
    public void Output_without_a_call_is_content_exactly_as_written(string text)
    {
        var result = ParserHarness.AssertStreamingMatchesWhole(Plan, text);
        Assert.Null(result.ToolCalls);
        Assert.Equal(text, result.Content);
    }

    [Theory]
    // Malformed JSON, a truncated call (max_tokens), a name that is not a string, no name, text where JSON should be.
    [InlineData("<tool_call>\n{\"name\": \"f\", \"arguments\": {\"a\": }}\n</tool_call>")]
    [InlineData("Sure.\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Par")]
    [InlineData("<tool_call>\n{\"name\": 42, \"arguments\": {}}\n</tool_call>")]
    [InlineData("<tool_call>\n{\"arguments\": {\"a\": 1}}\n</tool_call>")]
    [InlineData("<tool_call>{\"name\": \"f\", \"arguments\": {}} trailing</tool_call>")]
    public void Malformed_calls_make_the_whole_output_content(string text)
    {
        ParserHarness.AssertContentAsWritten(Plan, text);
        // Streaming never throws and loses no text outside what it sent as a call.
        foreach (var pieces in ParserHarness.Splits(text))
        {
            var streamed = ParserHarness.Stream(Plan, pieces);
            if (streamed.Calls.Count == 0)
                Assert.Equal(text, streamed.Content);
        }
    }

    [Fact]
    public void Parallel_tool_calls_false_keeps_the_first_call()
    {
        const string text = "<tool_call>\n{\"name\": \"a\", \"arguments\": {}}\n</tool_call>\n<tool_call>\n{\"name\": \"b\", \"arguments\": {}}\n</tool_call>";
        var plan = ParserHarness.Plan(new HermesToolParser(), parallel: false);
        var result = ParserHarness.AssertStreamingMatchesWhole(plan, text);
        Assert.Equal("a", Assert.Single(result.ToolCalls!).Function.Name);
    }
}
