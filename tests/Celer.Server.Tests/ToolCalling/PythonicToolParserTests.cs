using Celer.Server.ToolCalling;

namespace Celer.Server.Tests.ToolCalling;

/// <summary>The <c>pythonic</c> format as Llama 3.2/4 write it: a Python list of calls with literal keyword arguments.</summary>
public sealed class PythonicToolParserTests
{
    private static readonly ChatOutputPlan Plan = ParserHarness.Plan(new PythonicToolParser());

    [Fact]
    public void A_list_of_calls_is_tool_calls_with_json_arguments()
    {
        const string text = "[get_weather(city=\"San Francisco\", days=3), get_time(tz='UTC')]";
        var result = ParserHarness.AssertStreamingMatchesWhole(Plan, text);
        Assert.Null(result.Content);
        ParserHarness.AssertCall(result.ToolCalls![0], "get_weather", "{\"city\": \"San Francisco\", \"days\": 3}");
        ParserHarness.AssertCall(result.ToolCalls[1], "get_time", "{\"tz\": \"UTC\"}");
    }

    [Fact]
    public void Python_literals_become_the_json_that_json_dumps_writes()
    {
        const string text = "[f(a=True, b=None, c=-1.5, d=[1, 'two', {'k': False, 3: 'x'}], e='it\\'s \"q\"\\n', g=1_000, h=0x1F, i=5., k=\"\"\"tri\n'ple\"\"\",)]";
        var result = ParserHarness.AssertStreamingMatchesWhole(Plan, text);
        ParserHarness.AssertCall(Assert.Single(result.ToolCalls!), "f",
            "{\"a\": true, \"b\": null, \"c\": -1.5, \"d\": [1, \"two\", {\"k\": false, \"3\": \"x\"}], \"e\": \"it's \\\"q\\\"\\n\", \"g\": 1000, \"h\": 31, \"i\": 5.0, \"k\": \"tri\\n'ple\"}");
    }

    [Fact]
    public void Llama_4_python_tags_and_a_call_without_arguments()
    {
        var result = ParserHarness.AssertStreamingMatchesWhole(Plan, "<|python_start|>[get_time()]<|python_end|>");
        ParserHarness.AssertCall(Assert.Single(result.ToolCalls!), "get_time", "{}");
    }

    [Theory]
    [InlineData("The weather is fine.")]
    [InlineData("[1, 2, 3]")]
    [InlineData("[]")]
    [InlineData("[f(1)]")]
    [InlineData("[f(a=x)]")]
    [InlineData("[f(a=1)")]
    [InlineData("[f(a=1), g(b=]")]
    public void Anything_but_a_list_of_calls_is_content_as_written(string text) => ParserHarness.AssertContentAsWritten(Plan, text);
}
