using System.Text;
using System.Text.Json.Nodes;
using Celer.Server.Tests.Support;
using OpenAI.Chat;

namespace Celer.Server.Tests.Integration;

/// <summary>
/// gpt-oss's harmony format as the model really generates it (see <see cref="HarmonyServerFixture"/>), through the real
/// server with <c>--reasoning-parser openai_gptoss --tool-call-parser openai</c>: streamed and not, read with raw HTTP
/// (the OpenAI .NET client has no reasoning field) and with the client.
/// </summary>
public sealed class HarmonyServerTests(HarmonyServerFixture server) : IClassFixture<HarmonyServerFixture>
{
    private const int MaxTokens = 7;
    private const string Tool = """{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}""";
    private static readonly string Body = $$"""
        {"messages": [{"role": "user", "content": "{{HarmonyServerFixture.Prompt}}"}], "max_tokens": {{MaxTokens}}, "temperature": 0, "tools": [{{Tool}}]
        """;

    private static readonly string ExpectedArguments = """{"city": "Paris"}""";

    [Fact]
    public async Task The_generated_markers_are_special_tokens_as_the_fixture_says()
    {
        using var client = server.CreateClient();
        var request = $$"""{"prompt": "{{HarmonyServerFixture.Prompt}}", "max_tokens": {{MaxTokens}}, "temperature": 0""";
        var kept = await HttpApiTests.PostOkAsync(client, "/v1/completions",
            request + """, "skip_special_tokens": false, "spaces_between_special_tokens": false}""");
        Assert.Equal(HarmonyServerFixture.RawOutput, kept["choices"]![0]!["text"]!.GetValue<string>());

        // A completion skips special tokens by default: harmony's markers, and the call, are gone from its text.
        var skipped = await HttpApiTests.PostOkAsync(client, "/v1/completions", request + "}");
        Assert.Equal(HarmonyServerFixture.Reasoning + HarmonyServerFixture.Content, skipped["choices"]![0]!["text"]!.GetValue<string>());
    }

    [Fact]
    public async Task A_reply_carries_the_analysis_as_reasoning_the_final_answer_as_content_and_the_call()
    {
        using var client = server.CreateClient();
        var choice = (await HttpApiTests.PostOkAsync(client, "/v1/chat/completions", Body + "}"))["choices"]![0]!;
        var message = choice["message"]!;

        Assert.Equal(HarmonyServerFixture.Reasoning, message["reasoning_content"]!.GetValue<string>());
        Assert.Equal(HarmonyServerFixture.Reasoning, message["reasoning"]!.GetValue<string>());
        Assert.Equal(HarmonyServerFixture.Content, message["content"]!.GetValue<string>());
        var call = message["tool_calls"]!.AsArray().Single()!;
        Assert.StartsWith("chatcmpl-tool-", call["id"]!.GetValue<string>(), StringComparison.Ordinal);
        Assert.Equal("function", call["type"]!.GetValue<string>());
        Assert.Equal("get_weather", call["function"]!["name"]!.GetValue<string>());
        Assert.Equal(ExpectedArguments, call["function"]!["arguments"]!.GetValue<string>());
        Assert.Equal("tool_calls", choice["finish_reason"]!.GetValue<string>());
    }

    [Fact]
    public async Task A_stream_sends_reasoning_then_content_then_the_call_and_ends_with_tool_calls()
    {
        using var client = server.CreateClient();
        using var response = await client.PostJsonAsync("/v1/chat/completions", Body + ", \"stream\": true}");
        (await StreamedChat.ReadAsync(response)).AssertReasoningThenContentThenOneCall(HarmonyServerFixture.Reasoning, HarmonyServerFixture.Content, ExpectedArguments);
    }

    [Fact]
    public async Task The_openai_client_reads_the_answer_and_the_call_streamed_and_not()
    {
        var messages = new ChatMessage[] { new UserChatMessage(HarmonyServerFixture.Prompt) };
        var options = new ChatCompletionOptions
        {
            Tools = { ChatTool.CreateFunctionTool("get_weather", null, BinaryData.FromString("""{"type": "object", "properties": {"city": {"type": "string"}}}""")) },
            MaxOutputTokenCount = MaxTokens,
            Temperature = 0,
        };

        var completion = (await server.Chat().CompleteChatAsync(messages, options, TestContext.Current.CancellationToken)).Value;
        Assert.Equal(ChatFinishReason.ToolCalls, completion.FinishReason);
        Assert.Equal(HarmonyServerFixture.Content, completion.Content[0].Text);
        var call = Assert.Single(completion.ToolCalls);
        Assert.Equal(("get_weather", ExpectedArguments), (call.FunctionName, call.FunctionArguments.ToString()));

        var content = new StringBuilder();
        var arguments = new StringBuilder();
        string? name = null;
        ChatFinishReason? finish = null;
        await foreach (var update in server.Chat().CompleteChatStreamingAsync(messages, options, TestContext.Current.CancellationToken))
        {
            foreach (var part in update.ContentUpdate)
                content.Append(part.Text);
            foreach (var part in update.ToolCallUpdates)
            {
                name ??= part.FunctionName;
                arguments.Append(part.FunctionArgumentsUpdate?.ToString());
            }
            finish ??= update.FinishReason;
        }
        Assert.Equal(HarmonyServerFixture.Content, content.ToString());
        Assert.Equal(("get_weather", ExpectedArguments), (name, arguments.ToString()));
        Assert.Equal(ChatFinishReason.ToolCalls, finish);
    }

    [Fact]
    public async Task Without_tools_the_answer_is_clean_content_and_the_reply_ends_as_the_engine_did()
    {
        // Six tokens: the output ends with the answer, before the call. The markers are kept for the reasoning parser
        // alone, and stay out of both channels.
        using var client = server.CreateClient();
        const string body = $$"""{"messages": [{"role": "user", "content": "{{HarmonyServerFixture.Prompt}}"}], "max_tokens": 6, "temperature": 0""";
        var choice = (await HttpApiTests.PostOkAsync(client, "/v1/chat/completions", body + "}"))["choices"]![0]!;
        Assert.Equal(HarmonyServerFixture.Reasoning, choice["message"]!["reasoning_content"]!.GetValue<string>());
        Assert.Equal(HarmonyServerFixture.Content, choice["message"]!["content"]!.GetValue<string>());
        Assert.Null(choice["message"]!["tool_calls"]);
        Assert.Equal("length", choice["finish_reason"]!.GetValue<string>());

        using var response = await client.PostJsonAsync("/v1/chat/completions", body + ", \"stream\": true}");
        var content = new StringBuilder();
        foreach (var data in await SseReader.ReadAllAsync(response))
        {
            if (data != SseReader.Done)
                content.Append(JsonNode.Parse(data)!["choices"]![0]!["delta"]!["content"]?.GetValue<string>());
        }
        Assert.Equal(HarmonyServerFixture.Content, content.ToString());
    }

    [Fact]
    public async Task Structured_output_constrains_only_what_follows_the_final_answers_header()
    {
        // The analysis is free (the model writes its own reasoning tokens); after <|start|> and the rest of the final
        // header, two tokens, the answer must be one of the choices, which the model's own "ulate" is not.
        using var client = server.CreateClient();
        var body = $$"""{"messages": [{"role": "user", "content": "{{HarmonyServerFixture.Prompt}}"}], "max_tokens": 24, "temperature": 0, """
            + "\"structured_outputs\": {\"choice\": [\"Paris\", \"Oslo\"]}}";
        var choice = (await HttpApiTests.PostOkAsync(client, "/v1/chat/completions", body))["choices"]![0]!;
        Assert.Equal(HarmonyServerFixture.Reasoning, choice["message"]!["reasoning_content"]!.GetValue<string>());
        Assert.Matches("^(Paris|Oslo)$", choice["message"]!["content"]!.GetValue<string>());
        Assert.Equal("stop", choice["finish_reason"]!.GetValue<string>());
    }
}
