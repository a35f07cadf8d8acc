using Celer.Engine;

namespace Celer.Engine.Tests.Sampling;

public class SamplingParamsTests
{
    private const int Vocab = 1000;

    public static TheoryData<string, SamplingParams> InvalidParams() => new()
    {
        { "n", new() { N = 0 } },
        { "n", new() { N = SamplingParams.MaxN + 1 } },
        { "best_of", new() { N = 3, BestOf = 2 } },
        { "best_of", new() { BestOf = SamplingParams.MaxN + 1 } },
        { "temperature", new() { Temperature = float.NaN } },
        { "temperature", new() { Temperature = float.PositiveInfinity } },
        { "temperature", new() { Temperature = float.NegativeInfinity } },
        { "temperature", new() { Temperature = -0.1f } },
        { "temperature", new() { Temperature = 2.01f } },
        { "top_p", new() { TopP = 0f } },
        { "top_p", new() { TopP = 1.0001f } },
        { "top_p", new() { TopP = float.NaN } },
        { "top_k", new() { TopK = -2 } },
        { "min_p", new() { MinP = -0.01f } },
        { "min_p", new() { MinP = 1.01f } },
        { "min_p", new() { MinP = float.NaN } },
        { "presence_penalty", new() { PresencePenalty = 2.1f } },
        { "presence_penalty", new() { PresencePenalty = float.NaN } },
        { "frequency_penalty", new() { FrequencyPenalty = -2.1f } },
        { "repetition_penalty", new() { RepetitionPenalty = 0f } },
        { "repetition_penalty", new() { RepetitionPenalty = -1f } },
        { "repetition_penalty", new() { RepetitionPenalty = float.PositiveInfinity } },
        { "max_tokens", new() { MaxTokens = 0 } },
        { "min_tokens", new() { MinTokens = -1 } },
        { "min_tokens", new() { MaxTokens = 4, MinTokens = 5 } },
        { "logprobs", new() { Logprobs = 21 } },
        { "logprobs", new() { Logprobs = -1 } },
        { "logprobs", new() { Logprobs = -2 } },
        { "prompt_logprobs", new() { PromptLogprobs = 21 } },
        { "stop", new() { Stop = ["ok", ""] } },
        { "stop", new() { Stop = [.. Enumerable.Range(0, SamplingParams.MaxStopStrings + 1).Select(i => $"s{i}")] } },
        { "stop", new() { Stop = [new string('x', SamplingParams.MaxStopStringLength + 1)] } },
        { "stop_token_ids", new() { StopTokenIds = [5, Vocab] } },
        { "stop_token_ids", new() { StopTokenIds = [-1] } },
        { "logit_bias", new() { LogitBias = new Dictionary<int, float> { [Vocab] = 1f } } },
        { "logit_bias", new() { LogitBias = new Dictionary<int, float> { [3] = float.NaN } } },
        { "allowed_token_ids", new() { AllowedTokenIds = [] } },
        { "allowed_token_ids", new() { AllowedTokenIds = [1, Vocab + 5] } },
        { "bad_words", new() { BadWords = ["fine", ""] } },
        { "bad_words", new() { BadWordsTokenIds = [[1, 2], []] } },
        { "bad_words", new() { BadWordsTokenIds = [[1, Vocab]] } },
        { "n", new() { N = 2, Temperature = 0f } },
    };

    [Theory]
    [MemberData(nameof(InvalidParams))]
    public void Invalid_value_throws_with_the_OpenAI_field_name(string expectedParam, SamplingParams p)
    {
        var ex = Assert.Throws<SamplingParamsException>(() => p.Validate(Vocab));
        Assert.Equal(expectedParam, ex.Param);
        Assert.False(string.IsNullOrWhiteSpace(ex.Message));
    }

    public static TheoryData<SamplingParams> ValidParams() => new(new SamplingParams[]
    {
        new SamplingParams(),
        new SamplingParams() { Temperature = 0f },
        new SamplingParams() { Temperature = 2f, TopP = 1f, TopK = -1, MinP = 1f },
        new SamplingParams() { N = SamplingParams.MaxN, BestOf = SamplingParams.MaxN, Temperature = 0.7f },
        new SamplingParams() { TopK = 0 },
        new SamplingParams() { TopK = Vocab * 10 },   // larger than the vocabulary just means "all"
        new SamplingParams() { PresencePenalty = -2f, FrequencyPenalty = 2f, RepetitionPenalty = 0.01f },
        new SamplingParams() { MaxTokens = null, MinTokens = 1000 },
        new SamplingParams() { MaxTokens = 5, MinTokens = 5 },
        new SamplingParams() { Logprobs = 0, PromptLogprobs = 20 },
        new SamplingParams() { Stop = [new string('x', SamplingParams.MaxStopStringLength)], StopTokenIds = [0, Vocab - 1] },
        // Out-of-range bias values are clamped, not rejected (OpenAI, vLLM).
        new SamplingParams() { LogitBias = new Dictionary<int, float> { [0] = 1e9f, [Vocab - 1] = float.NegativeInfinity } },
        new SamplingParams() { AllowedTokenIds = [0, Vocab - 1], BadWords = ["x"], BadWordsTokenIds = [[Vocab - 1]] },
    });

    [Theory]
    [MemberData(nameof(ValidParams))]
    public void Valid_values_pass(SamplingParams p) => p.Validate(Vocab);

    [Fact]
    public void Logprobs_limit_follows_the_server_maximum_and_the_message_says_it()
    {
        new SamplingParams { Logprobs = 30 }.Validate(Vocab, maxLogprobs: 30);
        var ex = Assert.Throws<SamplingParamsException>(() => new SamplingParams { Logprobs = 6 }.Validate(Vocab, maxLogprobs: 5));
        Assert.Equal("Requested sample logprobs of 6, which is greater than max allowed: 5", ex.Message);
    }

    [Fact]
    public void Logit_bias_message_names_every_bad_key_in_order()
    {
        var p = new SamplingParams { LogitBias = new Dictionary<int, float> { [Vocab + 7] = 1f, [4] = 2f, [-3] = 0.5f, [Vocab] = 1f } };
        var ex = Assert.Throws<SamplingParamsException>(() => p.Validate(Vocab));
        Assert.Equal($"token_id(s) [-3, {Vocab}, {Vocab + 7}] in logit_bias contain out-of-vocab token ids. Vocabulary size: {Vocab}", ex.Message);
    }

    [Fact]
    public void Messages_use_vLLM_wording_and_Python_number_spelling()
    {
        Assert.Equal("temperature must be in [0, 2], got 2.5.",
            Assert.Throws<SamplingParamsException>(() => new SamplingParams { Temperature = 2.5f }.Validate(Vocab)).Message);
        Assert.Equal("temperature must be a finite number, got nan.",
            Assert.Throws<SamplingParamsException>(() => new SamplingParams { Temperature = float.NaN }.Validate(Vocab)).Message);
        Assert.Equal("top_p must be in (0, 1], got 0.",
            Assert.Throws<SamplingParamsException>(() => new SamplingParams { TopP = 0f }.Validate(Vocab)).Message);
        Assert.Equal("min_tokens must be less than or equal to max_tokens=4, got 5.",
            Assert.Throws<SamplingParamsException>(() => new SamplingParams { MaxTokens = 4, MinTokens = 5 }.Validate(Vocab)).Message);
        Assert.Equal("n must be at least 1, got 0.",
            Assert.Throws<SamplingParamsException>(() => new SamplingParams { N = 0 }.Validate(Vocab)).Message);
    }

    [Fact]
    public void Exception_is_an_ArgumentException_whose_message_has_no_parameter_suffix()
    {
        ArgumentException ex = new SamplingParamsException("top_k", "top_k must be 0 (disable), or at least 1, got -2.");
        Assert.Equal("top_k must be 0 (disable), or at least 1, got -2.", ex.Message);
    }

    [Theory]
    [InlineData(0f, true)]
    [InlineData(1e-6f, false)]   // vLLM raises (0, 0.01) to 0.01 before its greedy check
    [InlineData(0.7f, false)]
    public void Greedy_means_temperature_zero(float temperature, bool greedy) =>
        Assert.Equal(greedy, new SamplingParams { Temperature = temperature }.IsGreedy);
}
