using System.Text;
using System.Text.Json.Nodes;
using Celer.Server.Tests.Support;
using OpenAI.Chat;

namespace Celer.Server.Tests.Integration;

/// <summary>
/// Tool calling through the real server and the official OpenAI client, on the tiny model with its own chat template and
/// the <c>hermes</c> parser. The tiny model writes Python, never a tool call of its own, so what these check is the path:
/// tools reach the template, an answer without calls comes back as its own text (the same prompt's greedy continuation
/// from <c>/v1/completions</c>), a named choice's schema constrains the output to the call's arguments, and output
/// that does not complete the <c>required</c> array falls back to content.
/// </summary>
public sealed class ToolCallingServerTests(HermesServerFixture server) : IClassFixture<HermesServerFixture>
{
    private const int MaxTokens = 8;
    private const string Tools = """[{"type": "function", "function": {"name": "get_weather", "description": "Weather of a city", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}]""";
    private const string Messages = """[{"role": "user", "content": "Weather in Paris?"}]""";

    private static readonly ChatTool WeatherTool = ChatTool.CreateFunctionTool("get_weather", "Weather of a city",
        BinaryData.FromString("""{"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}"""));

    private static ChatCompletionOptions Options(ChatToolChoice? choice) => new()
    {
        Tools = { WeatherTool },
        ToolChoice = choice,
        MaxOutputTokenCount = MaxTokens,
        Temperature = 0,
    };

    /// <summary>The greedy continuation of the chat prompt with the tools rendered, as plain completion text.</summary>
    private static async Task<(string Text, int PromptTokens)> RawAsync(HttpClient client)
    {
        var tokens = await HttpApiTests.PostOkAsync(client, "/tokenize", $$"""{"messages": {{Messages}}, "tools": {{Tools}}, "add_special_tokens": false}""");
        var completion = await HttpApiTests.PostOkAsync(client, "/v1/completions",
            new JsonObject { ["prompt"] = tokens["tokens"]!.DeepClone(), ["max_tokens"] = MaxTokens, ["temperature"] = 0 }.ToJsonString());
        return (completion["choices"]![0]!["text"]!.GetValue<string>(), tokens["count"]!.GetValue<int>());
    }

    [Fact]
    public async Task Tools_reach_the_chat_template()
    {
        using var client = server.CreateClient();
        var (_, promptWithTools) = await RawAsync(client);
        var withTools = await HttpApiTests.PostOkAsync(client, "/v1/chat/completions",
            $$"""{"messages": {{Messages}}, "tools": {{Tools}}, "tool_choice": "none", "max_tokens": 1}""");
        var withoutTools = await HttpApiTests.PostOkAsync(client, "/v1/chat/completions", $$"""{"messages": {{Messages}}, "max_tokens": 1}""");

        Assert.Equal(promptWithTools, withTools["usage"]!["prompt_tokens"]!.GetValue<int>());
        // The template's tool preamble lists the function's JSON: dozens of tokens more than the plain prompt.
        Assert.True(promptWithTools > withoutTools["usage"]!["prompt_tokens"]!.GetValue<int>() + 50);
        var tokens = await HttpApiTests.PostOkAsync(client, "/tokenize", $$"""{"messages": {{Messages}}, "tools": {{Tools}}, "add_special_tokens": false}""");
        var prompt = (await HttpApiTests.PostOkAsync(client, "/detokenize", new JsonObject { ["tokens"] = tokens["tokens"]!.DeepClone() }.ToJsonString()))["prompt"]!.GetValue<string>();
        Assert.Contains("<tools>\n{\"type\": \"function\", \"function\": {\"name\": \"get_weather\"", prompt, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Auto_without_a_call_in_the_output_returns_the_text_as_content()
    {
        using var client = server.CreateClient();
        var (raw, _) = await RawAsync(client);
        Assert.DoesNotContain("<tool_call>", raw, StringComparison.Ordinal);
        var messages = new ChatMessage[] { new UserChatMessage("Weather in Paris?") };

        var completion = (await server.Chat().CompleteChatAsync(messages, Options(ChatToolChoice.CreateAutoChoice()), TestContext.Current.CancellationToken)).Value;
        Assert.Empty(completion.ToolCalls);
        Assert.Equal(raw, completion.Content[0].Text);
        Assert.Contains(completion.FinishReason, new[] { ChatFinishReason.Stop, ChatFinishReason.Length });

        var streamed = new StringBuilder();
        ChatFinishReason? finish = null;
        await foreach (var update in server.Chat().CompleteChatStreamingAsync(messages, Options(null), TestContext.Current.CancellationToken))
        {
            Assert.Empty(update.ToolCallUpdates);
            foreach (var part in update.ContentUpdate)
                streamed.Append(part.Text);
            finish ??= update.FinishReason;
        }
        Assert.Equal(raw, streamed.ToString());
        Assert.Equal(completion.FinishReason, finish);
    }

    [Fact]
    public async Task A_named_choice_constrains_the_output_to_the_functions_arguments()
    {
        var messages = new ChatMessage[] { new UserChatMessage("Weather in Paris?") };
        var options = Options(ChatToolChoice.CreateFunctionChoice("get_weather"));
        options.MaxOutputTokenCount = 32;

        var completion = (await server.Chat().CompleteChatAsync(messages, options, TestContext.Current.CancellationToken)).Value;
        var call = Assert.Single(completion.ToolCalls);
        Assert.Equal("get_weather", call.FunctionName);
        Assert.StartsWith("chatcmpl-tool-", call.Id, StringComparison.Ordinal);
        Assert.Equal(ChatFinishReason.ToolCalls, completion.FinishReason);
        Assert.Empty(completion.Content);
        // The schema's structured output made the model write an object with its one required string.
        var arguments = JsonNode.Parse(call.FunctionArguments.ToString())!.AsObject();
        Assert.Equal("city", Assert.Single(arguments).Key);
        Assert.Equal(System.Text.Json.JsonValueKind.String, arguments["city"]!.GetValueKind());

        var streamed = new StringBuilder();
        string? id = null, name = null;
        ChatFinishReason? finish = null;
        await foreach (var update in server.Chat().CompleteChatStreamingAsync(messages, options, TestContext.Current.CancellationToken))
        {
            foreach (var part in update.ToolCallUpdates)
            {
                Assert.Equal(0, part.Index);
                if (id is null)
                {
                    (id, name) = (part.ToolCallId, part.FunctionName);
                    Assert.NotNull(id);
                }
                else
                {
                    Assert.Null(part.ToolCallId);
                }
                streamed.Append(part.FunctionArgumentsUpdate?.ToString());
            }
            finish ??= update.FinishReason;
        }
        Assert.Equal("get_weather", name);
        Assert.Equal(call.FunctionArguments.ToString(), streamed.ToString());
        Assert.Equal(ChatFinishReason.ToolCalls, finish);
    }

    [Fact]
    public async Task Required_output_cut_short_is_content_streamed_or_not()
    {
        // Constrained to an array of calls, the tiny model names the function and then writes whitespace until
        // max_tokens: the unfinished array is not a call, and comes back as content rather than an error.
        using var client = server.CreateClient();
        var body = $$"""{"messages": {{Messages}}, "tools": {{Tools}}, "tool_choice": "required", "max_tokens": {{MaxTokens}}, "temperature": 0""";

        var choice = (await HttpApiTests.PostOkAsync(client, "/v1/chat/completions", body + "}"))["choices"]![0]!;
        var content = choice["message"]!["content"]!.GetValue<string>();
        Assert.StartsWith("[{\"name\"", content, StringComparison.Ordinal);
        Assert.Null(choice["message"]!["tool_calls"]);
        Assert.Equal("length", choice["finish_reason"]!.GetValue<string>());

        using var response = await client.PostJsonAsync("/v1/chat/completions", body + ", \"stream\": true}");
        var streamed = new StringBuilder();
        foreach (var data in await SseReader.ReadAllAsync(response))
        {
            if (data == SseReader.Done)
                continue;
            var delta = JsonNode.Parse(data)!["choices"]![0]!["delta"]!;
            Assert.Null(delta["tool_calls"]);
            streamed.Append(delta["content"]?.GetValue<string>());
        }
        Assert.Equal(content, streamed.ToString());
    }
}

/// <summary>vLLM's tool_choice rules on a server started without <c>--enable-auto-tool-choice</c>.</summary>
[Collection(ServerCollection.Name)]
public sealed class ToolChoiceWithoutAutoTests(ServerFixture server)
{
    private const string Tools = """[{"type": "function", "function": {"name": "f", "parameters": {"type": "object", "properties": {}}}}]""";
    private const string User = "\"messages\": [{\"role\": \"user\", \"content\": \"hi\"}], \"max_tokens\": 2";

    [Theory]
    [InlineData(", \"tools\": " + Tools)]
    [InlineData(", \"tools\": " + Tools + ", \"tool_choice\": \"auto\"")]
    public async Task Auto_is_refused_as_vllm_refuses_it(string fields)
    {
        using var client = server.CreateClient();
        using var response = await client.PostJsonAsync("/v1/chat/completions", "{" + User + fields + "}");
        var error = JsonNode.Parse(await response.Content.ReadAsStringAsync(TestContext.Current.CancellationToken))!["error"]!;
        Assert.Equal(400, (int)response.StatusCode);
        Assert.Equal("\"auto\" tool choice requires --enable-auto-tool-choice and --tool-call-parser to be set", error["message"]!.GetValue<string>());
        Assert.Equal("tool_choice", error["param"]!.GetValue<string>());
    }

    [Theory]
    [InlineData("\"required\"")]
    [InlineData("{\"type\": \"function\", \"function\": {\"name\": \"f\"}}")]
    public async Task A_tool_schema_that_cannot_be_enforced_is_400_before_admission(string choice)
    {
        // BAD_INPUT.md #17: the constraint built from the tools is compiled before the request is admitted.
        const string tools = """[{"type": "function", "function": {"name": "f", "parameters": {"type": "object", "not": {}}}}]""";
        using var client = server.CreateClient();
        using var response = await client.PostJsonAsync("/v1/chat/completions", "{" + User + ", \"tools\": " + tools + ", \"tool_choice\": " + choice + "}");
        var text = await response.Content.ReadAsStringAsync(TestContext.Current.CancellationToken);
        Assert.True(400 == (int)response.StatusCode, text);
        Assert.Contains("not", JsonNode.Parse(text)!["error"]!["message"]!.GetValue<string>(), StringComparison.Ordinal);
    }

    [Theory]
    [InlineData(", \"tools\": " + Tools + ", \"tool_choice\": \"none\"")]
    [InlineData(", \"tools\": " + Tools + ", \"tool_choice\": \"required\"")]
    [InlineData(", \"tools\": " + Tools + ", \"tool_choice\": {\"type\": \"function\", \"function\": {\"name\": \"f\"}}")]
    [InlineData(", \"tool_choice\": \"none\"")]
    public async Task None_required_and_named_need_no_parser(string fields)
    {
        using var client = server.CreateClient();
        await HttpApiTests.PostOkAsync(client, "/v1/chat/completions", "{" + User + fields + "}");
    }
}
