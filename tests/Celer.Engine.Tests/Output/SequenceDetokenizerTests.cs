using Celer.Engine.Output;
using Celer.Engine.Tests.Support;

namespace Celer.Engine.Tests.Output;

/// <summary>Stop strings on the real celer-tiny-py tokenizer, fed one token at a time as a stream.</summary>
public class SequenceDetokenizerTests
{
    private const string Completion = "    return self._value\n\ndef close(self):\n    pass\n";

    private static (string Streamed, string? Stop, List<string> Deltas) Stream(string stop, bool include = false, int minTokens = 0)
    {
        int[] prompt = TinyPy.Tokenizer.Encode("class A:\n    def get(self):\n", addSpecialTokens: false);
        int[] completion = TinyPy.Tokenizer.Encode(Completion, addSpecialTokens: false);
        var detokenizer = new SequenceDetokenizer(TinyPy.Tokenizer, prompt, new SamplingParams { Stop = [stop], IncludeStopStrInOutput = include, MinTokens = minTokens });
        var deltas = new List<string>();
        string? found = null;
        for (int i = 0; i < completion.Length && found is null; i++)
        {
            found = detokenizer.Update([completion[i]], stopTerminated: false);
            deltas.Add(detokenizer.NextTextDelta(finished: found is not null || i == completion.Length - 1));
        }
        return (string.Concat(deltas), found, deltas);
    }

    [Fact]
    public void WithoutStop_TheStreamIsTheDecodedCompletion()
    {
        (string text, string? stop, _) = Stream("@@never@@");
        Assert.Equal((Completion, null), (text, stop));
    }

    [Fact]
    public void StopString_TruncatesAndNeverLeaks()
    {
        (string text, string? stop, List<string> deltas) = Stream("def close");
        Assert.Equal("def close", stop);
        Assert.Equal("    return self._value\n\n", text);
        // While "def" was a possible start of the stop string it was held back, never sent.
        Assert.DoesNotContain(deltas, d => d.Contains("def", StringComparison.Ordinal));
    }

    [Fact]
    public void StopString_IncludedWhenAsked()
    {
        (string text, string? stop, _) = Stream("def close", include: true);
        Assert.Equal("def close", stop);
        Assert.Equal("    return self._value\n\ndef close", text);
    }

    [Theory]
    [InlineData(false, "    return self")]
    [InlineData(true, "    return self.")]
    public void StopTokenId_TextIsIncludedOnlyWhenAsked(bool include, string expected)
    {
        // The core stopped on a stop_token_ids token ("."); vLLM decodes it into the text with include_stop_str_in_output.
        int[] prompt = TinyPy.Tokenizer.Encode("class A:\n    def get(self):\n", addSpecialTokens: false);
        int[] completion = TinyPy.Tokenizer.Encode("    return self.", addSpecialTokens: false);
        Assert.Equal(".", TinyPy.Tokenizer.Decode([completion[^1]]));
        var detokenizer = new SequenceDetokenizer(TinyPy.Tokenizer, prompt, new SamplingParams { StopTokenIds = [completion[^1]], IncludeStopStrInOutput = include });
        Assert.Null(detokenizer.Update(completion, stopTerminated: true));
        Assert.Equal(expected, detokenizer.NextTextDelta(finished: true));
    }

    [Fact]
    public void StopString_SpanningSeveralTokens_IsFound()
    {
        int[] span = TinyPy.Tokenizer.Encode("_value\n\ndef", addSpecialTokens: false);
        Assert.True(span.Length >= 3, "the stop string must span several tokens for this test to mean anything");
        (string text, string? stop, _) = Stream("_value\n\ndef");
        Assert.Equal(("    return self.", "_value\n\ndef"), (text, stop));
    }

    [Fact]
    public void StopString_InsideTheFirstMinTokens_DoesNotStop()
    {
        int tokensOfFirstLine = TinyPy.Tokenizer.Encode("    return self._value\n", addSpecialTokens: false).Length;
        (string text, string? stop, _) = Stream("return", minTokens: tokensOfFirstLine);
        Assert.Null(stop);
        Assert.Equal(Completion, text);
    }
}
