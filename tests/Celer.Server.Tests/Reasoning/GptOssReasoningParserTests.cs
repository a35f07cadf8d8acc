using Celer.Server.Reasoning;
using Celer.Server.Tests.ToolCalling;
using Celer.Server.ToolCalling;
using Celer.Tokenization;

namespace Celer.Server.Tests.Reasoning;

/// <summary>
/// vLLM's <c>openai_gptoss</c> reasoning parser on gpt-oss's harmony output (as decoded with special tokens kept, the
/// end-of-sequence <c>&lt;|return|&gt;</c> and <c>&lt;|call|&gt;</c> left out), whole and streamed at every split.
/// </summary>
public sealed class GptOssReasoningParserTests
{
    private static readonly GptOssReasoningParser Parser = new(OpenAIToolParserTests.HarmonyTokenizer());

    /// <summary>The split of the whole text, checked to be what every streamed split of it gives.</summary>
    private static ReasoningSplit Split(string text)
    {
        var whole = Parser.Extract(text);
        foreach (var pieces in ParserHarness.Splits(text))
        {
            var stream = Parser.CreateStream();
            string reasoning = "", content = "";
            foreach (var piece in pieces)
            {
                var delta = stream.Push(piece);
                (reasoning, content) = (reasoning + delta.Reasoning, content + delta.Content);
            }
            var tail = stream.Finish();
            (reasoning, content) = (reasoning + tail.Reasoning, content + tail.Content);
            var where = string.Join(" | ", pieces);
            Assert.True((whole.Reasoning ?? "") == reasoning, $"reasoning '{reasoning}' at {where}");
            Assert.True((whole.Content ?? "") == content, $"content '{content}' at {where}");
            Assert.Equal(whole.Reasoning is not null, stream.EnteredThinking);
        }
        return whole;
    }

    [Fact]
    public void Analysis_is_reasoning_and_final_is_content()
    {
        var split = Split("<|channel|>analysis<|message|>User says hi. Reply briefly.<|end|><|start|>assistant<|channel|>final<|message|>Hello! How can I help?");
        Assert.Equal(new ReasoningSplit("User says hi. Reply briefly.", "Hello! How can I help?"), split);
        // With <|return|> kept (include_stop_str_in_output) the answer is the same.
        Assert.Equal(split, Split("<|channel|>analysis<|message|>User says hi. Reply briefly.<|end|><|start|>assistant<|channel|>final<|message|>Hello! How can I help?<|return|>"));
    }

    [Fact]
    public void Several_messages_of_a_channel_are_joined_with_a_newline()
    {
        var split = Split("<|channel|>analysis<|message|>First thought.<|end|>"
            + "<|start|>assistant<|channel|>commentary<|message|>Let me think more.<|end|>"
            + "<|start|>assistant<|channel|>analysis<|message|>Second thought.<|end|>"
            + "<|start|>assistant<|channel|>final<|message|>Done.");
        Assert.Equal(new ReasoningSplit("First thought.\nSecond thought.", "Let me think more.\nDone."), split);
    }

    [Theory]
    [InlineData("<|channel|>analysis<|message|>Cut off while thin", "Cut off while thin", null)]
    [InlineData("<|channel|>analysis<|message|>Thought.<|end|><|start|>assistant<|channel|>fin", "Thought.", null)]
    [InlineData("<|channel|>final<|message|>No reasoning at all.", null, "No reasoning at all.")]
    [InlineData("<|channel|>analysis<|message|><|end|><|start|>assistant<|channel|>final<|message|>Hi", null, "Hi")]
    // Decoded with special tokens skipped, or not harmony at all: content as written.
    [InlineData("analysisUser says hi.assistantfinalHello!", null, "analysisUser says hi.assistantfinalHello!")]
    [InlineData("Hello <|there|> to=you", null, "Hello <|there|> to=you")]
    [InlineData("", null, null)]
    public void Truncated_empty_and_non_harmony_output(string text, string? reasoning, string? content) =>
        Assert.Equal(new ReasoningSplit(reasoning, content), Split(text));

    [Fact]
    public void A_call_stays_in_the_content_for_the_tool_parser_to_read()
    {
        const string call = """<|start|>assistant<|channel|>commentary to=functions.get_weather <|constrain|>json<|message|>{"city":"Paris"}""";
        var split = Split("<|channel|>analysis<|message|>Need the weather.<|end|><|start|>assistant<|channel|>commentary<|message|>Checking.<|end|>" + call);
        Assert.Equal("Need the weather.", split.Reasoning);
        Assert.Equal("Checking." + call, split.Content);

        // What the openai tool parser makes of that content: the preamble, and the call.
        var tools = ParserHarness.AssertStreamingMatchesWhole(ParserHarness.Plan(ToolParserRegistry.Create(ToolParserRegistry.OpenAI, OpenAIToolParserTests.HarmonyTokenizer())), split.Content!);
        Assert.Equal("Checking.", tools.Content);
        ParserHarness.AssertCall(Assert.Single(tools.ToolCalls!), "get_weather", """{"city": "Paris"}""");

        // The first message may be the call, its recipient written first; it comes back with its opening put back.
        split = Split(""" to=functions.get_weather<|channel|>commentary json<|message|>{"city":"Paris"}<|call|><|start|>assistant<|channel|>final<|message|>Hi""");
        Assert.Equal("""<|start|>assistant to=functions.get_weather<|channel|>commentary json<|message|>{"city":"Paris"}<|call|>Hi""", split.Content);
    }

    [Fact]
    public void Reasoning_ends_with_the_final_answers_header_in_the_message_being_written()
    {
        var tokenizer = OpenAIToolParserTests.HarmonyTokenizer();
        int[] Ids(string text) => tokenizer.Encode(text, addSpecialTokens: false);
        // <|start|> assistant <|channel|> final <|message|> in o200k_harmony.
        Assert.Equal([200006, 173781, 200005, 17196, 200008], Parser.EndTokenIds);
        Assert.False(Parser.IsReasoningEnd(Ids("<|start|>assistant")));
        Assert.False(Parser.IsReasoningEnd(Ids("<|start|>assistant<|channel|>analysis<|message|>ab")));
        Assert.True(Parser.IsReasoningEnd(Ids("<|start|>assistant<|channel|>analysis<|message|>a<|end|><|start|>assistant<|channel|>final<|message|>")));
        Assert.True(Parser.IsReasoningEnd(Ids("<|start|>assistant<|channel|>final<|message|>ab")));
        // An earlier turn's answer in a multi-turn prompt does not end the reasoning of the turn being generated.
        Assert.False(Parser.IsReasoningEnd(Ids("<|start|>assistant<|channel|>final<|message|>ab<|end|><|start|>assistant")));
    }

    [Fact]
    public void It_is_registered_keeps_special_tokens_and_refuses_a_tokenizer_without_the_harmony_markers()
    {
        var registered = ReasoningParserRegistry.Create("openai_gptoss", OpenAIToolParserTests.HarmonyTokenizer());
        Assert.IsType<GptOssReasoningParser>(registered);
        Assert.True(registered.KeepsSpecialTokens);
        Assert.Contains("openai_gptoss", ReasoningParserRegistry.Names);

        var plain = Tokenizer.FromJson("""{"model": {"type": "BPE", "vocab": {"a": 0}, "merges": []}}""");
        var error = Assert.Throws<ArgumentException>(() => new GptOssReasoningParser(plain));
        Assert.Contains("openai_gptoss", error.Message, StringComparison.Ordinal);
    }
}
