using System.Text.Json;
using System.Text.Json.Nodes;
using Celer.Server.Protocol;
using Celer.Server.Reasoning;
using Celer.Server.Serving;
using Celer.Server.Tests.Reasoning;
using Celer.Server.Tests.ToolCalling;
using Celer.Server.ToolCalling;

namespace Celer.Server.Tests.Serving;

/// <summary>How the chat service turns a choice's output into the reply's message and the stream's deltas, on the wire.</summary>
public sealed class ChatOutputAssemblyTests
{
    private static readonly IReasoningParser Qwen3 = ReasoningParserRegistry.Create("qwen3", ReasoningParserTests.ThinkTokenizer());

    private static string Wire(ChatMessage message) => JsonSerializer.Serialize(message, ServerJsonContext.Wire.ChatMessage);

    [Fact]
    public void Without_parsers_the_message_is_the_text_as_before_with_no_extra_fields()
    {
        var (message, calledTools) = ChatService.AssembleMessage(ParserHarness.Plan(), "assistant", "", "<think>x</think><tool_call>");
        Assert.False(calledTools);
        Assert.Equal("""{"role":"assistant","content":"<think>x</think><tool_call>"}""", Wire(message));
    }

    [Fact]
    public void Reasoning_is_sent_as_reasoning_content_and_as_reasoning()
    {
        var (message, _) = ChatService.AssembleMessage(ParserHarness.Plan(reasoning: Qwen3), "assistant", "", "<think>why</think>4");
        Assert.Equal("""{"role":"assistant","content":"4","reasoning_content":"why","reasoning":"why"}""", Wire(message));
    }

    [Fact]
    public void A_tool_call_message_has_null_content_and_openais_call_shape()
    {
        var plan = ParserHarness.Plan(new HermesToolParser(), reasoning: Qwen3);
        var (message, calledTools) = ChatService.AssembleMessage(plan, "assistant", "", "<think>t</think><tool_call>{\"name\": \"f\", \"arguments\": {\"a\": 1}}</tool_call>");
        Assert.True(calledTools);
        var id = message.ToolCalls![0].Id;
        Assert.Equal(
            $$"""{"role":"assistant","content":null,"tool_calls":[{"id":"{{id}}","function":{"name":"f","arguments":"{\"a\": 1}"},"type":"function"}],"reasoning_content":"t","reasoning":"t"}""",
            Wire(message));
    }

    [Fact]
    public void Echo_goes_before_the_content()
    {
        var (message, _) = ChatService.AssembleMessage(ParserHarness.Plan(reasoning: Qwen3), "assistant", "So: ", "<think>x</think>4");
        Assert.Equal("So: 4", message.Content);
    }

    [Fact]
    public void Stream_deltas_carry_each_channel_and_hold_a_marker_split_across_deltas()
    {
        var parser = new ChoiceOutputParser(ParserHarness.Plan(new HermesToolParser(), reasoning: Qwen3));
        string Delta(string text, bool final = false) =>
            JsonSerializer.Serialize(ChatService.StreamDelta(parser, text, final), ServerJsonContext.Wire.ChatDelta);

        Assert.Equal("{}", Delta("<thi"));
        Assert.Equal("""{"reasoning_content":"hm","reasoning":"hm"}""", Delta("nk>hm</th"));
        Assert.Equal("""{"content":"Ok"}""", Delta("ink>Ok\n<tool"));
        var call = JsonNode.Parse(Delta("_call>{\"name\": \"f\", \"arguments\": {\"a\""))!["tool_calls"]![0]!;
        Assert.Equal("f", call["function"]!["name"]!.GetValue<string>());
        Assert.Equal("{\"a\"", call["function"]!["arguments"]!.GetValue<string>());
        Assert.Equal("""{"tool_calls":[{"index":0,"function":{"arguments":": 1}"}}]}""", Delta(":1}}</tool_call>", final: true));
        Assert.True(parser.SentToolCalls);

        // Without a parser a delta is its text, and the last one says "" rather than nothing.
        Assert.Equal("""{"content":"abc"}""", JsonSerializer.Serialize(ChatService.StreamDelta(null, "abc", false), ServerJsonContext.Wire.ChatDelta));
        Assert.Equal("""{"content":""}""", JsonSerializer.Serialize(ChatService.StreamDelta(null, "", true), ServerJsonContext.Wire.ChatDelta));
    }
}
