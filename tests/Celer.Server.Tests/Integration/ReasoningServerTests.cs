using System.Text;
using System.Text.Json.Nodes;
using Celer.Server.Tests.Support;
using OpenAI.Chat;

namespace Celer.Server.Tests.Integration;

/// <summary>
/// Reasoning and tool-call markers the model really generates (see <see cref="MarkerServerFixture"/>), through the real
/// server, streamed and not, read with raw HTTP (the OpenAI .NET client has no reasoning field) and with the client.
/// </summary>
public sealed class ReasoningServerTests(MarkerServerFixture server) : IClassFixture<MarkerServerFixture>
{
    private const int MaxTokens = 6;
    private const string Body = """
        {"messages": [{"role": "user", "content": "def fibonacci(n):"}], "max_tokens": 6, "temperature": 0,
         "tools": [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}]
        """;

    [Fact]
    public async Task The_generated_markers_are_what_the_fixture_says()
    {
        using var client = server.CreateClient();
        var completion = await HttpApiTests.PostOkAsync(client, "/v1/completions",
            $$"""{"prompt": "{{MarkerServerFixture.Prompt}}", "max_tokens": {{MaxTokens}}, "temperature": 0}""");
        Assert.Equal(MarkerServerFixture.RawOutput, completion["choices"]![0]!["text"]!.GetValue<string>());
    }

    [Fact]
    public async Task A_reply_carries_the_reasoning_the_content_and_the_call()
    {
        using var client = server.CreateClient();
        var choice = (await HttpApiTests.PostOkAsync(client, "/v1/chat/completions", Body + "}"))["choices"]![0]!;
        var message = choice["message"]!;

        Assert.Equal(" \"\"\"", message["reasoning_content"]!.GetValue<string>());
        Assert.Equal(" \"\"\"", message["reasoning"]!.GetValue<string>());
        Assert.Equal("alc", message["content"]!.GetValue<string>());
        var call = message["tool_calls"]!.AsArray().Single()!;
        Assert.StartsWith("chatcmpl-tool-", call["id"]!.GetValue<string>(), StringComparison.Ordinal);
        Assert.Equal("function", call["type"]!.GetValue<string>());
        Assert.Equal("get_weather", call["function"]!["name"]!.GetValue<string>());
        Assert.Equal("{\"city\": \"Paris\"}", call["function"]!["arguments"]!.GetValue<string>());
        Assert.Equal("tool_calls", choice["finish_reason"]!.GetValue<string>());
    }

    [Fact]
    public async Task A_stream_sends_reasoning_then_content_then_the_call_and_ends_with_tool_calls()
    {
        using var client = server.CreateClient();
        using var response = await client.PostJsonAsync("/v1/chat/completions", Body + ", \"stream\": true}");
        (await StreamedChat.ReadAsync(response)).AssertReasoningThenContentThenOneCall(" \"\"\"", "alc", "{\"city\": \"Paris\"}");
    }

    [Fact]
    public async Task The_openai_client_reads_the_calls_streamed_and_not()
    {
        var messages = new ChatMessage[] { new UserChatMessage(MarkerServerFixture.Prompt) };
        var options = new ChatCompletionOptions
        {
            Tools = { ChatTool.CreateFunctionTool("get_weather", null, BinaryData.FromString("""{"type": "object", "properties": {"city": {"type": "string"}}}""")) },
            MaxOutputTokenCount = MaxTokens,
            Temperature = 0,
        };

        var completion = (await server.Chat().CompleteChatAsync(messages, options, TestContext.Current.CancellationToken)).Value;
        Assert.Equal(ChatFinishReason.ToolCalls, completion.FinishReason);
        Assert.Equal("alc", completion.Content[0].Text);
        var call = Assert.Single(completion.ToolCalls);
        Assert.Equal(("get_weather", "{\"city\": \"Paris\"}"), (call.FunctionName, call.FunctionArguments.ToString()));

        var arguments = new StringBuilder();
        string? name = null;
        ChatFinishReason? finish = null;
        await foreach (var update in server.Chat().CompleteChatStreamingAsync(messages, options, TestContext.Current.CancellationToken))
        {
            foreach (var part in update.ToolCallUpdates)
            {
                name ??= part.FunctionName;
                arguments.Append(part.FunctionArgumentsUpdate?.ToString());
            }
            finish ??= update.FinishReason;
        }
        Assert.Equal(("get_weather", "{\"city\": \"Paris\"}"), (name, arguments.ToString()));
        Assert.Equal(ChatFinishReason.ToolCalls, finish);
    }

    [Fact]
    public async Task Tool_choice_none_leaves_the_call_in_the_content_and_include_reasoning_false_drops_the_reasoning()
    {
        using var client = server.CreateClient();
        var none = (await HttpApiTests.PostOkAsync(client, "/v1/chat/completions", Body + ", \"tool_choice\": \"none\"}"))["choices"]![0]!;
        Assert.Equal("alc" + MarkerServerFixture.ToolCallText, none["message"]!["content"]!.GetValue<string>());
        Assert.Null(none["message"]!["tool_calls"]);
        Assert.Equal(" \"\"\"", none["message"]!["reasoning_content"]!.GetValue<string>());
        Assert.Equal("length", none["finish_reason"]!.GetValue<string>());

        var hidden = (await HttpApiTests.PostOkAsync(client, "/v1/chat/completions", Body + ", \"include_reasoning\": false}"))["choices"]![0]!["message"]!;
        Assert.Null(hidden["reasoning_content"]);
        Assert.Null(hidden["reasoning"]);
        Assert.Equal("alc", hidden["content"]!.GetValue<string>());
    }
}
