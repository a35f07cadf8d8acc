using System.Text.Json;
using System.Text.Json.Nodes;
using Celer.ChatTemplates;
using Celer.Server.Serving;
using Celer.TestSupport;
using Celer.Tokenization;

namespace Celer.Server.Tests.Serving;

public class ChatPromptBuilderTests
{
    private static JsonArray Parse(string json) => ChatPromptBuilder.InContentFormat(
        ChatPromptBuilder.ParseMessages(JsonDocument.Parse(json).RootElement.Clone(), ChatContentRules.TextOnly).Messages, ChatTemplateContentFormat.String, null);

    [Fact]
    public void Text_parts_are_joined_by_newlines_and_other_fields_are_kept()
    {
        var conversation = Parse("""
            [{"role": "system", "content": "Be brief."},
             {"role": "user", "name": "ann", "content": [{"type": "text", "text": "Hello"}, {"type": "text", "text": "world"}]}]
            """);
        Assert.Equal("Be brief.", conversation[0]!["content"]!.GetValue<string>());
        Assert.Equal("Hello\nworld", conversation[1]!["content"]!.GetValue<string>());
        Assert.Equal("ann", conversation[1]!["name"]!.GetValue<string>());
    }

    [Fact]
    public void Image_placeholders_go_before_the_text_or_where_their_parts_are()
    {
        var rules = new ChatContentRules { ImagePlaceholder = "<image>" };
        JsonArray messages = ChatPromptBuilder.ParseMessages(JsonDocument.Parse("""
            [{"role": "user", "content": [{"type": "text", "text": "Compare"}, {"type": "image_url", "image_url": {"url": "data:image/png;base64,AA=="}},
                                          {"type": "text", "text": "with"}, {"type": "image_url", "image_url": {"url": "data:image/png;base64,AA=="}}]}]
            """).RootElement.Clone(), rules).Messages;
        string Content(bool interleave) =>
            ChatPromptBuilder.InContentFormat(messages, ChatTemplateContentFormat.String, "<image>", interleave)[0]!["content"]!.GetValue<string>();
        Assert.Equal("<image>\n<image>\nCompare\nwith", Content(interleave: false));   // vLLM's default
        Assert.Equal("Compare\n<image>\nwith\n<image>", Content(interleave: true));    // --interleave-mm-strings
    }

    [Fact]
    public void Tool_call_arguments_become_objects_for_the_template()
    {
        var conversation = Parse("""
            [{"role": "assistant", "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{\"city\": \"Oslo\"}"}}]},
             {"role": "tool", "tool_call_id": "c1", "content": "rain"}]
            """);
        var arguments = conversation[0]!["tool_calls"]![0]!["function"]!["arguments"];
        Assert.Equal("Oslo", arguments!["city"]!.GetValue<string>());
        // A message without content still has the key, as null, for templates that test it.
        Assert.True(conversation[0]!.AsObject().ContainsKey("content"));
        Assert.Null(conversation[0]!["content"]);
    }

    [Theory]
    [InlineData("[]")]
    [InlineData("{}")]
    [InlineData("[\"hi\"]")]
    [InlineData("[{\"content\": \"no role\"}]")]
    [InlineData("[{\"role\": \"wizard\", \"content\": \"x\"}]")]
    [InlineData("[{\"role\": \"user\", \"content\": 42}]")]
    [InlineData("[{\"role\": \"user\", \"content\": [{\"type\": \"image_url\", \"image_url\": {\"url\": \"x\"}}]}]")]
    [InlineData("[{\"role\": \"assistant\", \"tool_calls\": [{\"function\": {\"name\": \"f\", \"arguments\": \"{not json\"}}]}]")]
    public void Malformed_messages_are_400(string json)
    {
        var e = Assert.Throws<OpenAIException>(() => Parse(json));
        Assert.Equal(400, e.StatusCode);
        Assert.StartsWith("messages", e.Param, StringComparison.Ordinal);
    }

    [Fact]
    public void Echo_takes_the_last_message_only_when_its_role_matches()
    {
        var conversation = Parse("""[{"role": "user", "content": "q"}, {"role": "assistant", "content": "The answer is"}]""");
        Assert.Equal("The answer is", ChatPromptBuilder.LastContentIfRole(conversation, "assistant"));
        Assert.Null(ChatPromptBuilder.LastContentIfRole(conversation, "user"));
    }

    [Fact]
    public void Excluded_tools_are_checked_but_left_out_of_the_template()
    {
        // Qwen2.5's template writes a "# Tools" system turn only when it is given tools.
        var template = ChatTemplate.Parse(File.ReadAllText(Path.Combine(RepoPaths.Fixtures, "chat_templates", "qwen2.5.jinja")));
        var messages = JsonDocument.Parse("""[{"role": "user", "content": "Weather in Oslo?"}]""").RootElement.Clone();
        const string tools = """[{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}]""";
        string Render(string? toolsJson, bool exclude) => ChatPromptBuilder.Render(
            new ChatRenderRequest(messages, toolsJson is null ? null : JsonNode.Parse(toolsJson)!.AsArray(), JsonValue.Create("none"), true, false, null, null) { ExcludeTools = exclude },
            TokenizerConfig.Empty, [], _ => template).Text;

        var withoutTools = Render(null, exclude: false);
        Assert.StartsWith("<|im_start|>system\nYou are Qwen", withoutTools, StringComparison.Ordinal);
        Assert.Contains("<tools>\n{\"type\": \"function\", \"function\": {\"name\": \"get_weather\"", Render(tools, exclude: false), StringComparison.Ordinal);
        Assert.Equal(withoutTools, Render(tools, exclude: true));

        var e = Assert.Throws<OpenAIException>(() => Render("""[{"type": "function", "function": {"description": "no name"}}]""", exclude: true));
        Assert.Equal(400, e.StatusCode);
        Assert.Equal("tools[0]", e.Param);
    }
}
