using Celer.Server.Serving;

namespace Celer.Server.Tests.Serving;

public class ContextLengthTests
{
    [Fact]
    public void Prompt_filling_the_context_is_rejected_with_both_numbers()
    {
        var e = Assert.Throws<OpenAIException>(() => ContextLength.Check(2048, null, 2048, "prompt"));
        Assert.Equal("context_length_exceeded", e.Code);
        Assert.Equal("prompt", e.Param);
        Assert.Contains("2048 tokens", e.Message);
        Assert.Contains("2048 input tokens", e.Message);
    }

    [Fact]
    public void Prompt_plus_max_tokens_over_the_context_is_rejected()
    {
        var e = Assert.Throws<OpenAIException>(() => ContextLength.Check(100, 29, 128, "messages"));
        Assert.Equal("context_length_exceeded", e.Code);
        Assert.Equal("max_tokens", e.Param);
        Assert.Contains("(29 > 128 - 100)", e.Message);
    }

    [Fact]
    public void Exactly_fitting_requests_pass()
    {
        ContextLength.Check(100, 28, 128, "prompt");
        ContextLength.Check(127, null, 128, "prompt");
    }
}
