using Celer.Engine.Execution;
using Celer.TestSupport;

namespace Celer.Engine.Tests.StructuredOutputs;

/// <summary>
/// A reasoning model's end of thinking as a sequence of tokens (gpt-oss's final-answer header is five): through the whole
/// engine with the shipped model, the output is free until the prompt followed by the output ends with the sequence,
/// and constrained from the next token on. Stand-ins for the sequence are taken from the model's own greedy output, so
/// the constrained output equals the free one exactly up to where the sequence completes.
/// </summary>
public sealed class ReasoningEndSequenceTests
{
    private const string Prompt = "def fibonacci(n):";
    private const string Digits = "[0-9]{3}";

    private static readonly Tokenization.Tokenizer Tokenizer = Tokenization.Tokenizer.FromFile(Path.Combine(RepoPaths.DefaultModel, "tokenizer.json"));

    private static LlmEngine Engine() => ModelLoader.LoadOffline(
        new EngineArgs { Model = RepoPaths.DefaultModel, MaxNumSeqs = 4, MaxModelLen = 256, Seed = 7 }).Engine;

    private static int[] Generate(LlmEngine engine, SamplingParams sampling)
    {
        var output = engine.Generate([new GenerateRequest("r", Tokenizer.Encode(Prompt), sampling)])[0];
        return [.. output.Outputs.SelectMany(o => o.TokenIdsDelta)];
    }

    private static int[] Gated(LlmEngine engine, int[] end) => Generate(engine, new SamplingParams
    {
        Temperature = 0, MaxTokens = 40,
        StructuredOutputs = new StructuredOutputsParams { Regex = Digits, ReasoningEndTokenIds = end },
    });

    private static int[] Free(LlmEngine engine) => Generate(engine, new SamplingParams { Temperature = 0, MaxTokens = 40, IgnoreEos = true });

    [Fact]
    public void The_whole_sequence_ends_the_thinking_not_its_last_token_alone()
    {
        using var engine = Engine();
        var free = Free(engine);
        // A pair (a, b) of the free output whose b was written before without a in front of it: a parser that looked
        // at b alone would constrain from that earlier b on.
        int at = Enumerable.Range(2, free.Length - 2).First(j =>
            Enumerable.Range(1, j - 1).Any(i => free[i] == free[j] && free[i - 1] != free[j - 1])
            && !Enumerable.Range(1, j - 1).Any(i => free[i - 1] == free[j - 1] && free[i] == free[j]));

        var gated = Gated(engine, [free[at - 1], free[at]]);
        Assert.Equal(free[..(at + 1)], gated[..(at + 1)]);
        Assert.Matches($"^{Digits}$", Tokenizer.Decode(gated.AsSpan(at + 1)));
    }

    [Fact]
    public void The_prompt_counts_as_the_tokens_before_the_output()
    {
        using var engine = Engine();
        var free = Free(engine);
        int[] prompt = Tokenizer.Encode(Prompt);

        // The prompt's last token and the output's first complete the sequence at the first output token.
        var gated = Gated(engine, [prompt[^1], free[0]]);
        Assert.Equal(free[0], gated[0]);
        Assert.Matches($"^{Digits}$", Tokenizer.Decode(gated.AsSpan(1)));

        // A sequence the prompt ends with, but no output token completes, leaves the output free.
        Assert.Equal(free, Generate(engine, new SamplingParams
        {
            Temperature = 0, MaxTokens = 40, IgnoreEos = true,
            StructuredOutputs = new StructuredOutputsParams { Regex = Digits, ReasoningEndTokenIds = [prompt[^2], prompt[^1]] },
        }));
    }

    [Theory]
    [InlineData(new int[0], "at least one token")]
    [InlineData(new[] { 5, 1_000_000 }, "1000000")]
    public void An_empty_or_out_of_vocabulary_sequence_is_refused(int[] end, string named)
    {
        var sampling = new SamplingParams { StructuredOutputs = new StructuredOutputsParams { Regex = Digits, ReasoningEndTokenIds = end } };
        var e = Assert.Throws<SamplingParamsException>(() => sampling.Validate(vocabSize: 8192));
        Assert.Contains(named, e.Message, StringComparison.Ordinal);
    }
}
