using Celer.Server.Reasoning;
using Celer.Server.Tests.ToolCalling;
using Celer.Server.ToolCalling;
using Celer.Tokenization;

namespace Celer.Server.Tests.Reasoning;

/// <summary>
/// gpt-oss output as the engine hands it to the parsers: o200k_harmony token ids after the chat template's prompt,
/// detokenized one at a time as a stream is, with special tokens kept and no spaces around them (what the chat service
/// forces for <c>openai_gptoss</c> and <c>openai</c>).
/// </summary>
public sealed class GptOssDetokenizedOutputTests
{
    // What gpt-oss's chat template renders for one user message; the generation prompt ends with <|start|>assistant.
    private const string Prompt = "<|start|>system<|message|>You are ChatGPT, a large language model trained by OpenAI.<|end|>"
        + "<|start|>user<|message|>Weather in Paris?<|end|><|start|>assistant";

    private const string Analysis = "<|channel|>analysis<|message|>User wants the weather in Paris. Use get_weather.<|end|>";

    private const string CallOutput = Analysis
        + "<|start|>assistant<|channel|>commentary<|message|>Checking the weather…<|end|>"
        + """<|start|>assistant<|channel|>commentary to=functions.get_weather <|constrain|>json<|message|>{"city":"Paris","unit":"°C"}""";

    private const string AnswerOutput = Analysis + "<|start|>assistant<|channel|>final<|message|>It is 18 °C in Paris — mild.";

    private static Tokenizer Tokenizer => OpenAIToolParserTests.HarmonyTokenizer();

    private static readonly GptOssReasoningParser Reasoning = new(Tokenizer);

    /// <summary>The text each output token adds, as the engine's detokenizer streams it.</summary>
    private static List<string> Deltas(string output, bool spacesBetweenSpecialTokens)
    {
        var detokenizer = new IncrementalDetokenizer(Tokenizer, Tokenizer.Encode(Prompt, addSpecialTokens: false),
            skipSpecialTokens: false, spacesBetweenSpecialTokens: spacesBetweenSpecialTokens);
        return [.. Tokenizer.Encode(output, addSpecialTokens: false).Select(detokenizer.Append)];
    }

    [Fact]
    public void Kept_without_spaces_the_markers_come_back_as_the_model_wrote_them()
    {
        Assert.Equal(CallOutput, string.Concat(Deltas(CallOutput, spacesBetweenSpecialTokens: false)));
        // With spaces between special tokens (Celer's default) the text is not the model's: the answer would gain them.
        Assert.Contains("<|end|> <|start|> assistant <|channel|>", string.Concat(Deltas(CallOutput, spacesBetweenSpecialTokens: true)), StringComparison.Ordinal);
    }

    [Fact]
    public void A_call_streamed_token_by_token_through_both_parsers()
    {
        var plan = ParserHarness.Plan(ToolParserRegistry.Create(ToolParserRegistry.OpenAI, Tokenizer), reasoning: Reasoning);
        var deltas = Deltas(CallOutput, spacesBetweenSpecialTokens: false);
        var streamed = ParserHarness.Stream(plan, deltas);
        var whole = ParserHarness.Whole(plan, string.Concat(deltas));

        Assert.Equal("User wants the weather in Paris. Use get_weather.", streamed.Reasoning);
        Assert.Equal("Checking the weather…", streamed.Content);
        var call = Assert.Single(streamed.Calls);
        Assert.Equal(("get_weather", """{"city": "Paris", "unit": "°C"}"""), (call.Function.Name, call.Function.Arguments));
        Assert.True(streamed.SentToolCalls);

        Assert.Equal(streamed.Reasoning, whole.Reasoning);
        Assert.Equal(streamed.Content, whole.Content);
        ParserHarness.AssertCall(Assert.Single(whole.ToolCalls!), "get_weather", """{"city": "Paris", "unit": "°C"}""");
    }

    [Fact]
    public void An_answer_streamed_token_by_token_is_reasoning_then_content_and_ends_the_reasoning_in_the_token_ids()
    {
        var plan = ParserHarness.Plan(reasoning: Reasoning);
        var streamed = ParserHarness.Stream(plan, Deltas(AnswerOutput, spacesBetweenSpecialTokens: false));
        Assert.Equal("User wants the weather in Paris. Use get_weather.", streamed.Reasoning);
        Assert.Equal("It is 18 °C in Paris — mild.", streamed.Content);

        // The prompt alone has not ended the thinking; the prompt and the output through the final header have.
        int[] prompt = Tokenizer.Encode(Prompt, addSpecialTokens: false);
        int[] output = Tokenizer.Encode(AnswerOutput, addSpecialTokens: false);
        int header = AnswerOutput.IndexOf("<|start|>assistant<|channel|>final<|message|>", StringComparison.Ordinal);
        int headerTokens = Tokenizer.Encode(AnswerOutput[..header], addSpecialTokens: false).Length + Reasoning.EndTokenIds.Count;
        Assert.False(Reasoning.IsReasoningEnd(prompt));
        Assert.False(Reasoning.IsReasoningEnd([.. prompt, .. output[..(headerTokens - 1)]]));
        Assert.True(Reasoning.IsReasoningEnd([.. prompt, .. output[..headerTokens]]));
        Assert.Equal(Reasoning.EndTokenIds, output[(headerTokens - Reasoning.EndTokenIds.Count)..headerTokens]);
    }
}
