using Celer.Server.ToolCalling;
using Celer.TestSupport;
using Celer.Tokenization;

namespace Celer.Server.Tests.ToolCalling;

/// <summary>
/// vLLM's <c>openai</c> tool-call parser on gpt-oss's harmony output, as the model writes it after the chat template's
/// <c>&lt;|start|&gt;assistant</c> and as the detokenizer hands it out with special tokens kept: <c>&lt;|call|&gt;</c> and
/// <c>&lt;|return|&gt;</c> are end-of-sequence tokens whose text is left out, so most outputs end without them.
/// </summary>
public sealed class OpenAIToolParserTests
{
    private static readonly Lazy<Tokenizer> GptOssTokenizer = new(() =>
        Tokenizer.FromFile(Path.Combine(RepoPaths.TestTokenizer("gptoss"), "tokenizer.json")));

    /// <summary>gpt-oss's own tokenizer (o200k_harmony, fetched by tools/fetch-test-assets.sh), loaded once.</summary>
    internal static Tokenizer HarmonyTokenizer() => GptOssTokenizer.Value;

    private static readonly IToolParser Parser = ToolParserRegistry.Create(ToolParserRegistry.OpenAI, HarmonyTokenizer());

    private const string Analysis = "<|channel|>analysis<|message|>User wants the weather in Paris. Use get_weather.<|end|>";

    private static ChoiceResult Read(string text) =>
        ParserHarness.AssertStreamingMatchesWhole(ParserHarness.Plan(Parser), text);

    [Fact]
    public void A_call_after_the_analysis_ends_with_the_output()
    {
        var text = Analysis + """<|start|>assistant<|channel|>commentary to=functions.get_weather <|constrain|>json<|message|>{"city":"Paris","unit":"celsius"}""";
        var result = Read(text);
        var call = Assert.Single(result.ToolCalls!);
        ParserHarness.AssertCall(call, "get_weather", """{"city": "Paris", "unit": "celsius"}""");
        Assert.StartsWith("chatcmpl-tool-", call.Id, StringComparison.Ordinal);
        Assert.Null(result.Content);
    }

    [Theory]
    // The recipient before the channel, and a bare content type.
    [InlineData("""<|start|>assistant to=functions.get_weather<|channel|>commentary json<|message|>{"city": "Paris"}<|call|>""")]
    // No content type at all: JSON is assumed, as vLLM assumes it.
    [InlineData("""<|start|>assistant<|channel|>commentary to=functions.get_weather<|message|>{"city": "Paris"}""")]
    // Called from the analysis channel, which gpt-oss sometimes does.
    [InlineData("""<|start|>assistant<|channel|>analysis to=functions.get_weather <|constrain|>json<|message|>{ "city" : "Paris" }""")]
    public void Header_variants_are_calls(string call)
    {
        var result = Read(Analysis + call);
        ParserHarness.AssertCall(Assert.Single(result.ToolCalls!), "get_weather", """{"city": "Paris"}""");
        Assert.Null(result.Content);
    }

    [Fact]
    public void The_first_message_may_be_the_call_its_header_opened_by_the_prompt()
    {
        var result = Read("""<|channel|>commentary to=functions.get_time <|constrain|>json<|message|>{}""");
        ParserHarness.AssertCall(Assert.Single(result.ToolCalls!), "get_time", "{}");
        result = Read(""" to=functions.get_time<|channel|>commentary json<|message|>{}""");
        ParserHarness.AssertCall(Assert.Single(result.ToolCalls!), "get_time", "{}");
    }

    [Fact]
    public void A_preamble_is_content_and_several_calls_keep_their_order()
    {
        var text = Analysis
            + "<|start|>assistant<|channel|>commentary<|message|>Checking both cities.<|end|>"
            + """<|start|>assistant<|channel|>commentary to=functions.get_weather <|constrain|>json<|message|>{"city":"Paris"}<|call|>"""
            + """<|start|>assistant<|channel|>commentary to=functions.get_weather <|constrain|>json<|message|>{"city":"東京","days":[1,2]}<|call|>""";
        var result = Read(text);
        Assert.Equal("Checking both cities.", result.Content);
        Assert.Equal(2, result.ToolCalls!.Count);
        ParserHarness.AssertCall(result.ToolCalls[0], "get_weather", """{"city": "Paris"}""");
        ParserHarness.AssertCall(result.ToolCalls[1], "get_weather", """{"city": "東京", "days": [1, 2]}""");
        Assert.NotEqual(result.ToolCalls[0].Id, result.ToolCalls[1].Id);

        var first = ParserHarness.Whole(ParserHarness.Plan(Parser, parallel: false), text);
        ParserHarness.AssertCall(Assert.Single(first.ToolCalls!), "get_weather", """{"city": "Paris"}""");
    }

    [Fact]
    public void Arguments_that_are_not_json_stay_as_written_and_the_call_stands()
    {
        // vLLM keeps the text of a call whose JSON does not parse; here from where it stops being JSON.
        var result = Read(Analysis + "<|start|>assistant<|channel|>commentary to=functions.run <|constrain|>json<|message|>{\"cmd\": ls -la}<|call|>");
        var call = Assert.Single(result.ToolCalls!);
        Assert.Equal("run", call.Function.Name);
        Assert.Equal("{\"cmd\": ls -la}", call.Function.Arguments);

        // A content type other than JSON: the body is the arguments, untouched.
        result = Read(Analysis + "<|start|>assistant<|channel|>commentary to=functions.shell <|constrain|>text<|message|>echo  hi\n<|call|>");
        Assert.Equal("echo  hi\n", Assert.Single(result.ToolCalls!).Function.Arguments);
    }

    [Fact]
    public void A_call_cut_inside_its_json_falls_back_to_the_text_as_written()
    {
        var text = Analysis + """<|start|>assistant<|channel|>commentary to=functions.get_weather <|constrain|>json<|message|>{"city": "Par""";
        ParserHarness.AssertContentAsWritten(ParserHarness.Plan(Parser), text);
        // A stream sent the call's start and keeps it.
        var streamed = ParserHarness.Stream(ParserHarness.Plan(Parser), [text[..^5], text[^5..]]);
        Assert.Equal("get_weather", Assert.Single(streamed.Calls).Function.Name);
    }

    [Theory]
    // Special tokens skipped: nothing of harmony is left to read.
    [InlineData("analysisUser wants the weather.assistantcommentary to=functions.get_weather json{\"city\": \"Paris\"}")]
    // Cut inside the analysis, and an output cut inside a header.
    [InlineData("<|channel|>analysis<|message|>User wants")]
    [InlineData("<|channel|>analysis<|message|>Done.<|end|><|start|>assistant<|channel|>comm")]
    public void Output_without_a_call_has_none(string text)
    {
        foreach (var pieces in ParserHarness.Splits(text))
        {
            var streamed = ParserHarness.Stream(ParserHarness.Plan(Parser), pieces);
            Assert.Empty(streamed.Calls);
            Assert.False(streamed.SentToolCalls);
        }
        Assert.Null(ParserHarness.Whole(ParserHarness.Plan(Parser), text).ToolCalls);
    }

    [Fact]
    public void The_answer_is_content_and_the_analysis_is_not_streamed_or_not()
    {
        // Unlike the other formats, an answer without calls is not the text as written: harmony's headers and its analysis
        // channel are not for the user, whether or not a reasoning parser took the analysis out first (vLLM's openai
        // parser returns the final message alone). ParserFuzzTests checks this on random outputs.
        var text = Analysis + "<|start|>assistant<|channel|>final<|message|>It is 18 °C in Paris.";
        var result = Read(text);
        Assert.Equal("It is 18 °C in Paris.", result.Content);
        Assert.Null(result.ToolCalls);

        // Cut inside the analysis: nothing for the user, where the text as written would show the analysis.
        Assert.Equal("", ParserHarness.Whole(ParserHarness.Plan(Parser), "<|channel|>analysis<|message|>User wants").Content);
    }

    [Fact]
    public void Requests_offered_tools_keep_special_tokens_and_a_tokenizer_without_harmony_is_refused()
    {
        Assert.True(Parser.KeepsSpecialTokens);
        Assert.Contains("openai", ToolParserRegistry.Names);
        var plain = Tokenizer.FromJson("""{"model": {"type": "BPE", "vocab": {"a": 0}, "merges": []}}""");
        var error = Assert.Throws<ArgumentException>(() => ToolParserRegistry.Create(ToolParserRegistry.OpenAI, plain));
        Assert.Contains("<|message|>", error.Message, StringComparison.Ordinal);
    }
}
