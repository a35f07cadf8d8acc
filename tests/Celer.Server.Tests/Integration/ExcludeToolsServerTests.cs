using System.Net;
using System.Text.Json.Nodes;
using Celer.Server.Tests.Support;

namespace Celer.Server.Tests.Integration;

/// <summary>
/// <c>--exclude-tools-when-tool-choice-none</c> (vLLM's flag) on the real server: a chat request with
/// <c>tool_choice: "none"</c> is rendered as if it had no tools, read back token for token through
/// <c>prompt_logprobs</c> (each prompt position's own token) and compared with <c>/tokenize</c> of the same messages
/// without tools; every other tool choice still renders them. Without the flag (the default) <c>"none"</c> renders the
/// tools too: <see cref="ToolCallingServerTests.Tools_reach_the_chat_template"/>.
/// </summary>
public sealed class ExcludeToolsServerTests(ExcludeToolsServerFixture server) : IClassFixture<ExcludeToolsServerFixture>
{
    private const string Tools = """[{"type": "function", "function": {"name": "get_weather", "description": "Weather of a city", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}]""";
    private const string Messages = """[{"role": "user", "content": "Weather in Paris?"}]""";

    private static async Task<int[]> TokenizeAsync(HttpClient client, bool tools)
    {
        var body = tools
            ? $$"""{"messages": {{Messages}}, "tools": {{Tools}}, "add_special_tokens": false}"""
            : $$"""{"messages": {{Messages}}, "add_special_tokens": false}""";
        var tokens = await HttpApiTests.PostOkAsync(client, "/tokenize", body);
        return tokens["tokens"]!.AsArray().Select(t => t!.GetValue<int>()).ToArray();
    }

    [Fact]
    public async Task Tool_choice_none_renders_the_prompt_without_the_tools()
    {
        using var client = server.CreateClient();
        var withoutTools = await TokenizeAsync(client, tools: false);
        var withTools = await TokenizeAsync(client, tools: true);
        Assert.True(withTools.Length > withoutTools.Length + 50);

        var reply = await HttpApiTests.PostOkAsync(client, "/v1/chat/completions",
            $$"""{"messages": {{Messages}}, "tools": {{Tools}}, "tool_choice": "none", "max_tokens": 1, "prompt_logprobs": 0}""");
        Assert.Equal(withoutTools.Length, reply["usage"]!["prompt_tokens"]!.GetValue<int>());
        // prompt_logprobs: null for the first position, then each position's own token first.
        var positions = reply["prompt_logprobs"]!.AsArray();
        Assert.Equal(withoutTools.Length, positions.Count);
        var promptIds = positions.Skip(1).Select(p => int.Parse(p!.AsObject().First().Key, System.Globalization.CultureInfo.InvariantCulture));
        Assert.Equal(withoutTools[1..], promptIds);

        var text = (await HttpApiTests.PostOkAsync(client, "/detokenize", new JsonObject { ["tokens"] = new JsonArray(withoutTools.Select(id => (JsonNode)id).ToArray()) }.ToJsonString()))["prompt"]!.GetValue<string>();
        Assert.DoesNotContain("get_weather", text, StringComparison.Ordinal);
        Assert.DoesNotContain("<tools>", text, StringComparison.Ordinal);
        Assert.Null(reply["choices"]![0]!["message"]!["tool_calls"]);

        // Streamed: the same prompt.
        using var stream = await client.PostJsonAsync("/v1/chat/completions",
            $$"""{"messages": {{Messages}}, "tools": {{Tools}}, "tool_choice": "none", "stream_options": {"include_usage": true}, "max_tokens": 1, "stream": true}""");
        var events = await SseReader.ReadAllAsync(stream);
        Assert.Equal(SseReader.Done, events[^1]);
        Assert.Equal(withoutTools.Length, JsonNode.Parse(events[^2])!["usage"]!["prompt_tokens"]!.GetValue<int>());
    }

    [Theory]
    [InlineData(null)]
    [InlineData("\"auto\"")]
    [InlineData("\"required\"")]
    [InlineData("""{"type": "function", "function": {"name": "get_weather"}}""")]
    public async Task Every_other_tool_choice_still_renders_the_tools(string? toolChoice)
    {
        using var client = server.CreateClient();
        var withTools = await TokenizeAsync(client, tools: true);
        var choice = toolChoice is null ? "" : $", \"tool_choice\": {toolChoice}";
        var reply = await HttpApiTests.PostOkAsync(client, "/v1/chat/completions",
            $$"""{"messages": {{Messages}}, "tools": {{Tools}}{{choice}}, "max_tokens": 1}""");
        Assert.Equal(withTools.Length, reply["usage"]!["prompt_tokens"]!.GetValue<int>());
    }

    [Fact]
    public async Task Tools_left_out_are_still_checked()
    {
        using var client = server.CreateClient();
        const string nameless = """[{"type": "function", "function": {"description": "no name"}}]""";
        using var response = await client.PostJsonAsync("/v1/chat/completions",
            $$"""{"messages": {{Messages}}, "tools": {{nameless}}, "tool_choice": "none", "max_tokens": 1}""");
        var body = await response.Content.ReadAsStringAsync(TestContext.Current.CancellationToken);
        Assert.Equal(HttpStatusCode.BadRequest, response.StatusCode);
        Assert.Equal("tools[0]", JsonNode.Parse(body)!["error"]!["param"]!.GetValue<string>());
    }
}
