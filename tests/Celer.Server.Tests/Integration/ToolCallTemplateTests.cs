using System.Text.Json.Nodes;

namespace Celer.Server.Tests.Integration;

/// <summary>
/// The standard agent loop through the shipped model's template (issue 18 #7): tools offered, an assistant turn
/// with <c>content: null</c> and <c>tool_calls</c> (arguments as the JSON string OpenAI clients send, parsed to an
/// object as vLLM does), then the tool's results. The rendered prompt is read back through /tokenize and
/// /detokenize and compared in full.
/// </summary>
[Collection(ServerCollection.Name)]
public sealed class ToolCallTemplateTests(ServerFixture server)
{
    private const string Tools = """[{"type": "function", "function": {"name": "get_weather", "description": "Weather of a city", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}]""";

    private const string Messages = """
        [{"role": "system", "content": "Be brief."},
         {"role": "user", "content": "Weather in Paris and Oslo?"},
         {"role": "assistant", "content": null, "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\": \"Paris\"}"}},
            {"id": "call_2", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\": \"Oslo\"}"}}]},
         {"role": "tool", "tool_call_id": "call_1", "content": "18 C"},
         {"role": "tool", "tool_call_id": "call_2", "content": "9 C"}]
        """;

    [Fact]
    public async Task Tool_calls_and_tool_results_render_and_serve()
    {
        using var client = server.CreateClient();
        var tokens = await HttpApiTests.PostOkAsync(client, "/tokenize",
            $$"""{"messages": {{Messages}}, "tools": {{Tools}}, "add_generation_prompt": true, "add_special_tokens": false}""");
        var text = (await HttpApiTests.PostOkAsync(client, "/detokenize", new JsonObject { ["tokens"] = tokens["tokens"]!.DeepClone() }.ToJsonString()))["prompt"]!.GetValue<string>();

        const string expected = "<|im_start|>system\nBe brief.\n\n# Tools\n\nYou may call one or more functions to assist with the user query.\n\n"
            + "The functions are listed within <tools></tools> XML tags:\n<tools>\n"
            + """{"type": "function", "function": {"name": "get_weather", "description": "Weather of a city", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}"""
            + "\n</tools>\n\nTo call a function, return a JSON object with its name and arguments within <tool_call></tool_call> XML tags:\n"
            + "<tool_call>\n{\"name\": <function-name>, \"arguments\": <args-json-object>}\n</tool_call><|im_end|>\n"
            + "<|im_start|>user\nWeather in Paris and Oslo?<|im_end|>\n"
            + "<|im_start|>assistant\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n</tool_call>\n"
            + "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Oslo\"}}\n</tool_call><|im_end|>\n"
            + "<|im_start|>user\n<tool_response>\n18 C\n</tool_response>\n<tool_response>\n9 C\n</tool_response><|im_end|>\n"
            + "<|im_start|>assistant\n";
        Assert.Equal(expected, text);

        // The turn that used to be a 400 ("can only concatenate str (not NoneType)") is served; without the tools'
        // preamble the prompt fits the fixture's 256-token context.
        var withoutTools = await HttpApiTests.PostOkAsync(client, "/tokenize", $$"""{"messages": {{Messages}}, "add_special_tokens": false}""");
        var reply = await HttpApiTests.PostOkAsync(client, "/v1/chat/completions", $$"""{"messages": {{Messages}}, "max_tokens": 3, "temperature": 0}""");
        Assert.Equal(withoutTools["count"]!.GetValue<int>(), reply["usage"]!["prompt_tokens"]!.GetValue<int>());
        Assert.Equal(3, reply["usage"]!["completion_tokens"]!.GetValue<int>());
    }

    [Fact]
    public async Task A_plain_conversation_renders_as_before()
    {
        using var client = server.CreateClient();
        var tokens = await HttpApiTests.PostOkAsync(client, "/tokenize",
            """{"messages": [{"role": "system", "content": "S"}, {"role": "user", "content": "U"}, {"role": "assistant", "content": "A"}], "add_generation_prompt": false, "add_special_tokens": false}""");
        var text = (await HttpApiTests.PostOkAsync(client, "/detokenize", new JsonObject { ["tokens"] = tokens["tokens"]!.DeepClone() }.ToJsonString()))["prompt"]!.GetValue<string>();
        Assert.Equal("<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nU<|im_end|>\n<|im_start|>assistant\nA<|im_end|>\n", text);
    }
}
