using System.Text.Json.Nodes;
using Celer.Server.Protocol;
using Celer.Server.Serving;
using Celer.Server.ToolCalling;

namespace Celer.Server.Tests.ToolCalling;

/// <summary>vLLM's tool_choice rules and messages, and the outputs that required and named choices are read from.</summary>
public sealed class ToolChoiceTests
{
    private const string Tools = """[{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}]""";

    private static ChatCompletionRequest Request(string? tools, string? toolChoice) => new()
    {
        Tools = tools is null ? null : (JsonArray)JsonNode.Parse(tools)!,
        ToolChoice = toolChoice is null ? null : JsonNode.Parse(toolChoice),
    };

    [Theory]
    [InlineData(null, null, "None")]
    [InlineData(Tools, null, "Auto")]
    [InlineData(Tools, "\"auto\"", "Auto")]
    [InlineData(Tools, "\"none\"", "None")]
    [InlineData(null, "\"none\"", "None")]
    [InlineData(Tools, "\"required\"", "Required")]
    [InlineData("[]", "\"required\"", "None")]
    [InlineData("[]", null, "None")]
    [InlineData(Tools, """{"type": "function", "function": {"name": "get_weather"}}""", "Named")]
    public void Choices_resolve_as_vllm_resolves_them(string? tools, string? choice, string expected)
    {
        var mode = Enum.Parse<ToolChoiceMode>(expected);
        var resolved = ToolChoice.Resolve(Request(tools, choice), autoToolChoiceEnabled: true);
        Assert.Equal(mode, resolved.Mode);
        Assert.Equal(mode == ToolChoiceMode.Named ? "get_weather" : null, resolved.FunctionName);
    }

    [Theory]
    [InlineData(Tools, null)]
    [InlineData(Tools, "\"auto\"")]
    public void Auto_without_the_server_flags_is_refused_as_vllm_words_it(string? tools, string? choice)
    {
        var e = Assert.Throws<OpenAIException>(() => ToolChoice.Resolve(Request(tools, choice), autoToolChoiceEnabled: false));
        Assert.Equal("\"auto\" tool choice requires --enable-auto-tool-choice and --tool-call-parser to be set", e.Message);
        Assert.Equal("tool_choice", e.Param);
        Assert.Equal(400, e.StatusCode);
        // required and named work without them: they are structured output, not a parser.
        Assert.Equal(ToolChoiceMode.Required, ToolChoice.Resolve(Request(Tools, "\"required\""), autoToolChoiceEnabled: false).Mode);
    }

    [Theory]
    [InlineData(null, "\"required\"", "When using `tool_choice`, `tools` must be set.")]
    [InlineData(Tools, "\"sometimes\"", "Invalid value for `tool_choice`: \"sometimes\"! Only named tools, \"none\", \"auto\" or \"required\" are supported.")]
    [InlineData(Tools, "{\"type\": \"function\"}", "Invalid value for `function`: `None` in `tool_choice`! Correct usage: `{\"type\": \"function\", \"function\": {\"name\": \"my_function\"}}`")]
    [InlineData(Tools, "{\"function\": {}}", "Expected field `name` in `function` in `tool_choice`! Correct usage: `{\"type\": \"function\", \"function\": {\"name\": \"my_function\"}}`")]
    [InlineData(Tools, "{\"function\": {\"name\": \"\"}}", "Invalid `name` in `function`: `` in `tool_choice`! Correct usage: `{\"type\": \"function\", \"function\": {\"name\": \"my_function\"}}`")]
    [InlineData(Tools, "{\"function\": {\"name\": \"get_time\"}}", "The tool specified in `tool_choice` does not match any of the specified `tools`")]
    public void Bad_choices_are_400_with_vllms_message(string? tools, string choice, string message)
    {
        var e = Assert.Throws<OpenAIException>(() => ToolChoice.Resolve(Request(tools, choice), autoToolChoiceEnabled: true));
        Assert.Equal(message, e.Message);
        Assert.Equal(400, e.StatusCode);
    }

    [Fact]
    public void Named_choice_output_is_the_arguments_as_written_and_streams_its_header_first()
    {
        var plan = ParserHarness.Plan(choice: new ToolChoice(ToolChoiceMode.Named, "get_weather"));
        var result = ParserHarness.AssertStreamingMatchesWhole(plan, "{\"city\": \"Paris\"}");
        Assert.Null(result.Content);
        ParserHarness.AssertCall(Assert.Single(result.ToolCalls!), "get_weather", "{\"city\": \"Paris\"}");

        var first = Assert.Single(new ChoiceOutputParser(plan).Push("{\"ci", final: false).ToolCalls!);
        Assert.Equal(("get_weather", "{\"ci"), (first.Function.Name, first.Function.Arguments));
        Assert.StartsWith("chatcmpl-tool-", first.Id, StringComparison.Ordinal);
    }

    [Fact]
    public void Required_choice_output_is_an_array_of_name_and_parameters()
    {
        var plan = ParserHarness.Plan(choice: new ToolChoice(ToolChoiceMode.Required));
        const string text = "[{\"name\": \"get_weather\", \"parameters\": {\"city\": \"Paris\"}}, {\"name\": \"get_weather\", \"parameters\": {\"city\": \"Oslo\"}}]";
        var result = ParserHarness.AssertStreamingMatchesWhole(plan, text);
        Assert.Null(result.Content);
        ParserHarness.AssertCall(result.ToolCalls![0], "get_weather", "{\"city\": \"Paris\"}");
        ParserHarness.AssertCall(result.ToolCalls[1], "get_weather", "{\"city\": \"Oslo\"}");
    }

    [Theory]
    [InlineData("Paris is mild today.")]
    [InlineData("[]")]
    [InlineData("[{\"name\": \"get_weather\", \"parameters\": {\"city\": ")]
    [InlineData("{\"name\": \"get_weather\", \"parameters\": {}}")]
    public void Required_choice_output_that_is_not_calls_is_content(string text)
    {
        // The grammar that enforces the schema may be absent; unconstrained output must not become a 500.
        ParserHarness.AssertContentAsWritten(ParserHarness.Plan(choice: new ToolChoice(ToolChoiceMode.Required)), text);
    }
}
