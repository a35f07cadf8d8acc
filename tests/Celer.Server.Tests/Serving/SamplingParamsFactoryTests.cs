using System.Text.Json;
using Celer.Server.Protocol;
using Celer.Server.Serving;

namespace Celer.Server.Tests.Serving;

public class SamplingParamsFactoryTests
{
    private static CompletionRequest Completion(string json) => RequestBody.Parse(System.Text.Encoding.UTF8.GetBytes(json), ServerJsonContext.Wire.CompletionRequest);

    private static ChatCompletionRequest Chat(string json) => RequestBody.Parse(System.Text.Encoding.UTF8.GetBytes(json), ServerJsonContext.Wire.ChatCompletionRequest);

    [Fact]
    public void Completion_maps_every_openai_and_vllm_field()
    {
        var request = Completion("""
            {"prompt": "x", "n": 3, "best_of": 4, "max_tokens": 7, "temperature": 0.7, "top_p": 0.9, "top_k": 40, "min_p": 0.05,
             "presence_penalty": 0.5, "frequency_penalty": -0.25, "repetition_penalty": 1.1, "seed": 1234, "stop": ["\n\n", "END"],
             "stop_token_ids": [2, 3], "include_stop_str_in_output": true, "ignore_eos": true, "min_tokens": 2, "logprobs": 5,
             "logit_bias": {"17": 3.5, "42": -250}, "allowed_token_ids": [5, 6, 7], "bad_words": ["foo"],
             "skip_special_tokens": false, "spaces_between_special_tokens": false, "unknown_future_field": {"a": 1}}
            """);
        var p = SamplingParamsFactory.ForCompletion(request, GenerationDefaults.None, promptLength: 10, maxModelLen: 100);

        Assert.Equal(3, p.N);
        Assert.Equal(4, p.BestOf);
        Assert.Equal(7, p.MaxTokens);
        Assert.Equal(0.7f, p.Temperature);
        Assert.Equal(0.9f, p.TopP);
        Assert.Equal(40, p.TopK);
        Assert.Equal(0.05f, p.MinP);
        Assert.Equal(0.5f, p.PresencePenalty);
        Assert.Equal(-0.25f, p.FrequencyPenalty);
        Assert.Equal(1.1f, p.RepetitionPenalty);
        Assert.Equal(1234L, p.Seed);
        Assert.Equal(["\n\n", "END"], p.Stop);
        Assert.Equal([2, 3], p.StopTokenIds);
        Assert.True(p.IncludeStopStrInOutput);
        Assert.True(p.IgnoreEos);
        Assert.Equal(2, p.MinTokens);
        Assert.Equal(5, p.Logprobs);
        Assert.Null(p.PromptLogprobs);
        Assert.Equal(3.5f, p.LogitBias![17]);
        Assert.Equal(-100f, p.LogitBias[42]); // clamped to OpenAI's range
        Assert.Equal([5, 6, 7], p.AllowedTokenIds!);
        Assert.Equal(["foo"], p.BadWords!);
        Assert.False(p.SkipSpecialTokens);
        Assert.False(p.SpacesBetweenSpecialTokens);
    }

    [Fact]
    public void Completion_defaults_are_vllms_and_echo_with_logprobs_asks_for_prompt_logprobs()
    {
        var p = SamplingParamsFactory.ForCompletion(Completion("""{"prompt": "x", "echo": true, "logprobs": 2}"""), GenerationDefaults.None, 10, 100);
        Assert.Equal(16, p.MaxTokens);
        Assert.Equal(1f, p.Temperature);
        Assert.Equal(1f, p.TopP);
        Assert.Equal(0, p.TopK);
        Assert.Equal(1f, p.RepetitionPenalty);
        Assert.Equal(2, p.PromptLogprobs);
        Assert.Empty(p.Stop);
    }

    [Fact]
    public void Generation_config_fills_only_what_the_request_leaves_unset()
    {
        var defaults = new GenerationDefaults(Temperature: 0.6f, TopP: 0.95f, TopK: 20, MinP: 0.1f, RepetitionPenalty: 1.05f, MaxNewTokens: 50);
        var p = SamplingParamsFactory.ForChat(Chat("""{"messages": [], "temperature": 0.2}"""), defaults, promptLength: 90, maxModelLen: 100);
        Assert.Equal(0.2f, p.Temperature);
        Assert.Equal(0.95f, p.TopP);
        Assert.Equal(20, p.TopK);
        Assert.Equal(0.1f, p.MinP);
        Assert.Equal(1.05f, p.RepetitionPenalty);
        // max_new_tokens caps "the rest of the context" (100 - 90 = 10 < 50).
        Assert.Equal(10, p.MaxTokens);
    }

    [Fact]
    public void Chat_max_tokens_prefers_max_completion_tokens_and_unset_means_rest_of_context()
    {
        Assert.Equal(5, SamplingParamsFactory.ForChat(Chat("""{"max_tokens": 9, "max_completion_tokens": 5}"""), GenerationDefaults.None, 3, 100).MaxTokens);
        Assert.Equal(9, SamplingParamsFactory.ForChat(Chat("""{"max_tokens": 9}"""), GenerationDefaults.None, 3, 100).MaxTokens);
        Assert.Null(SamplingParamsFactory.ForChat(Chat("{}"), GenerationDefaults.None, 3, 100).MaxTokens);
    }

    [Fact]
    public void Chat_logprobs_use_top_logprobs_depth()
    {
        Assert.Equal(3, SamplingParamsFactory.ForChat(Chat("""{"logprobs": true, "top_logprobs": 3}"""), GenerationDefaults.None, 3, 100).Logprobs);
        Assert.Equal(0, SamplingParamsFactory.ForChat(Chat("""{"logprobs": true}"""), GenerationDefaults.None, 3, 100).Logprobs);
        Assert.Null(SamplingParamsFactory.ForChat(Chat("""{"logprobs": false}"""), GenerationDefaults.None, 3, 100).Logprobs);
        var e = Assert.Throws<OpenAIException>(() => SamplingParamsFactory.ForChat(Chat("""{"top_logprobs": 2}"""), GenerationDefaults.None, 3, 100));
        Assert.Equal("top_logprobs", e.Param);
        Assert.Equal(400, e.StatusCode);
    }

    [Theory]
    [InlineData("""{"stop": 5}""", "stop")]
    [InlineData("""{"stop": ["a", 1]}""", "stop")]
    [InlineData("""{"logit_bias": {"abc": 1, "12": 2}}""", "logit_bias")]
    [InlineData("""{"logit_bias": {"12": "high"}}""", "logit_bias")]
    [InlineData("""{"logit_bias": [1, 2]}""", "logit_bias")]
    public void Malformed_shapes_are_400_naming_the_field(string json, string param)
    {
        var e = Assert.Throws<OpenAIException>(() => SamplingParamsFactory.ForCompletion(Completion(json), GenerationDefaults.None, 3, 100));
        Assert.Equal(400, e.StatusCode);
        Assert.Equal(param, e.Param);
    }

    [Fact]
    public void Logit_bias_error_names_the_bad_keys()
    {
        var e = Assert.Throws<OpenAIException>(() => SamplingParamsFactory.ParseLogitBias(JsonDocument.Parse("""{"abc": 1, "x1": 2, "3": 1}""").RootElement));
        Assert.Contains("abc", e.Message);
        Assert.Contains("x1", e.Message);
    }

    [Fact]
    public void Stop_as_a_single_string_is_a_one_element_list()
    {
        Assert.Equal(["###"], SamplingParamsFactory.ParseStop(JsonDocument.Parse("\"###\"").RootElement));
        Assert.Empty(SamplingParamsFactory.ParseStop(JsonDocument.Parse("null").RootElement));
    }
}
