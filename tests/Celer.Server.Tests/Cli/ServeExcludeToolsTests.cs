using Celer.Server.Tests.Integration;

namespace Celer.Server.Tests.Cli;

/// <summary>
/// <c>celer serve --exclude-tools-when-tool-choice-none</c> reaches the server: in its own process, a chat request with
/// <c>tool_choice: "none"</c> is billed the prompt tokens of its messages without the tools, one with <c>"auto"</c>
/// those with them (as <c>/tokenize</c> counts them).
/// </summary>
public sealed class ServeExcludeToolsTests
{
    private const string Tools = """[{"type": "function", "function": {"name": "get_weather", "description": "Weather of a city", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}]""";
    private const string Messages = """[{"role": "user", "content": "Weather in Paris?"}]""";

    [Fact]
    public async Task The_flag_leaves_the_tools_out_of_a_none_request()
    {
        await using var server = await ServeProcess.StartAsync(
            ServerFixture.DefaultModel, "--port", "0", "--max-model-len", "1024", "--max-num-seqs", "4", "--disable-log-stats",
            "--enable-auto-tool-choice", "--tool-call-parser", "hermes", "--exclude-tools-when-tool-choice-none");
        using var client = server.CreateClient();

        var withTools = (await HttpApiTests.PostOkAsync(client, "/tokenize", $$"""{"messages": {{Messages}}, "tools": {{Tools}}}"""))["count"]!.GetValue<int>();
        var withoutTools = (await HttpApiTests.PostOkAsync(client, "/tokenize", $$"""{"messages": {{Messages}}}"""))["count"]!.GetValue<int>();
        Assert.True(withTools > withoutTools + 50);

        var none = await HttpApiTests.PostOkAsync(client, "/v1/chat/completions", $$"""{"messages": {{Messages}}, "tools": {{Tools}}, "tool_choice": "none", "max_tokens": 1}""");
        Assert.Equal(withoutTools, none["usage"]!["prompt_tokens"]!.GetValue<int>());
        var auto = await HttpApiTests.PostOkAsync(client, "/v1/chat/completions", $$"""{"messages": {{Messages}}, "tools": {{Tools}}, "tool_choice": "auto", "max_tokens": 1}""");
        Assert.Equal(withTools, auto["usage"]!["prompt_tokens"]!.GetValue<int>());
    }
}
