using Celer.Server.Reasoning;
using Celer.Server.Tests.ToolCalling;
using Celer.Server.ToolCalling;
using Celer.Tokenization;

namespace Celer.Server.Tests.Reasoning;

/// <summary>vLLM's <c>deepseek_r1</c> and <c>qwen3</c> reasoning parsers, whole and streamed at every split.</summary>
public sealed class ReasoningParserTests
{
    /// <summary>A vocabulary with the markers as tokens 2 and 3, as Qwen3's and DeepSeek-R1's have them (not special).</summary>
    internal static Tokenizer ThinkTokenizer() => Tokenizer.FromJson("""
        {"model": {"type": "BPE", "vocab": {"a": 0, "b": 1}, "merges": []},
         "added_tokens": [{"id": 2, "content": "<think>", "special": false, "normalized": false},
                          {"id": 3, "content": "</think>", "special": false, "normalized": false}]}
        """);

    private static readonly IReasoningParser DeepSeek = ReasoningParserRegistry.Create("deepseek_r1", ThinkTokenizer());
    private static readonly IReasoningParser Qwen3 = ReasoningParserRegistry.Create("qwen3", ThinkTokenizer());

    private static ChoiceResult Split(IReasoningParser parser, string text) =>
        ParserHarness.AssertStreamingMatchesWhole(ParserHarness.Plan(reasoning: parser), text);

    [Fact]
    public void Deepseek_r1_output_starts_in_the_thinking_its_template_opened()
    {
        const string text = "Okay, 2 + 2.\nThat is 4.\n</think>\n\nThe answer is **4**.";
        var result = Split(DeepSeek, text);
        Assert.Equal("Okay, 2 + 2.\nThat is 4.\n", result.Reasoning);
        Assert.Equal("\n\nThe answer is **4**.", result.Content);
        Assert.Equal(new ReasoningSplit(result.Reasoning, result.Content), DeepSeek.Extract(text));
        Assert.Equal(new ReasoningSplit(null, "plain"), Qwen3.Extract("plain"));
    }

    [Theory]
    [InlineData("Still thinking when max_tokens ran out", "Still thinking when max_tokens ran out")]
    [InlineData("<think>\nA model that opens it itself", "\nA model that opens it itself")]
    [InlineData("", "")]
    public void Deepseek_r1_without_the_end_marker_is_all_reasoning(string text, string reasoning)
    {
        var result = Split(DeepSeek, text);
        Assert.Equal(reasoning, result.Reasoning);
        Assert.Null(result.Content);
    }

    [Fact]
    public void Deepseek_r1_end_marker_at_the_very_end_leaves_no_content()
    {
        var result = Split(DeepSeek, "<think>x</think>");
        Assert.Equal("x", result.Reasoning);
        Assert.Null(result.Content);
    }

    [Fact]
    public void Qwen3_splits_the_think_block_from_the_answer()
    {
        var result = Split(Qwen3, "<think>\nThe user wants 2 + 2.\n</think>\n\nIt is 4.");
        Assert.Equal("\nThe user wants 2 + 2.\n", result.Reasoning);
        Assert.Equal("\n\nIt is 4.", result.Content);
    }

    [Theory]
    // enable_thinking: false puts an empty think block in the prompt; the model answers without markers.
    [InlineData("It is 4.")]
    // Without the start marker an end marker is text (vLLM's qwen3 parser needs both).
    [InlineData("It is 4.</think> really")]
    [InlineData("a < b, </ and <thin are not markers")]
    public void Qwen3_without_a_think_block_is_all_content(string text)
    {
        var result = Split(Qwen3, text);
        Assert.Null(result.Reasoning);
        Assert.Equal(text, result.Content);
    }

    [Fact]
    public void Qwen3_thinking_cut_short_is_reasoning()
    {
        var result = Split(Qwen3, "<think>\nLet me count: one, two,");
        Assert.Equal("\nLet me count: one, two,", result.Reasoning);
        Assert.Null(result.Content);
    }

    [Fact]
    public void Include_reasoning_false_drops_the_reasoning_but_still_splits_it_off()
    {
        var plan = ParserHarness.Plan(reasoning: Qwen3, includeReasoning: false);
        var result = ParserHarness.AssertStreamingMatchesWhole(plan, "<think>hidden</think>shown");
        Assert.Null(result.Reasoning);
        Assert.Equal("shown", result.Content);
    }

    [Fact]
    public void Tool_calls_are_read_from_the_content_only()
    {
        // A <tool_call> inside the thinking is reasoning; the one after it is a call.
        const string text = "<think>\nI could write <tool_call> here.\n</think>\n\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Oslo\"}}\n</tool_call>";
        var plan = ParserHarness.Plan(new HermesToolParser(), reasoning: Qwen3);
        var result = ParserHarness.AssertStreamingMatchesWhole(plan, text);
        Assert.Equal("\nI could write <tool_call> here.\n", result.Reasoning);
        Assert.Null(result.Content);
        ParserHarness.AssertCall(Assert.Single(result.ToolCalls!), "get_weather", "{\"city\": \"Oslo\"}");
    }

    [Fact]
    public void Is_reasoning_end_looks_back_for_the_nearest_marker()
    {
        const int start = 2, end = 3;
        var thinking = (ThinkingReasoningParser)DeepSeek;
        Assert.Equal((start, end), (thinking.StartTokenId, thinking.EndTokenId));
        Assert.Equal([end], DeepSeek.EndTokenIds);
        Assert.False(DeepSeek.KeepsSpecialTokens);
        Assert.False(DeepSeek.IsReasoningEnd([]));
        Assert.False(DeepSeek.IsReasoningEnd([0, 1, 0]));
        Assert.False(DeepSeek.IsReasoningEnd([start, 0, 1]));
        Assert.True(DeepSeek.IsReasoningEnd([start, 0, end, 1, 0]));
        // A prompt whose template closed the thinking (Qwen3's enable_thinking: false) has ended it.
        Assert.True(Qwen3.IsReasoningEnd([0, start, 1, end, 1]));
        // An earlier turn's thinking ended, a new one began.
        Assert.False(Qwen3.IsReasoningEnd([start, end, 0, start, 1]));
    }

    [Fact]
    public void A_tokenizer_without_the_markers_is_refused_naming_them()
    {
        var plain = Tokenizer.FromJson("""{"model": {"type": "BPE", "vocab": {"a": 0}, "merges": []}}""");
        var e = Assert.Throws<ArgumentException>(() => ReasoningParserRegistry.Create("qwen3", plain));
        Assert.Contains("--reasoning-parser qwen3", e.Message, StringComparison.Ordinal);
        Assert.Contains("'<think>'", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void An_unknown_parser_is_refused_listing_the_known_ones()
    {
        var e = Assert.Throws<ArgumentException>(() => ReasoningParserRegistry.CheckName("deepseek"));
        Assert.Equal("--reasoning-parser 'deepseek' is not a known reasoning parser; the known ones are: deepseek_r1, openai_gptoss, qwen3.", e.Message);
    }
}
