namespace Celer.Tokenization.Tests;

public class IncrementalDetokenizerTests
{
    public static TheoryData<string> Names() => new(TestAssets.TokenizerNames);

    /// <summary>Token-by-token output concatenates to the full decode and never shows a split character as U+FFFD.</summary>
    [Theory]
    [MemberData(nameof(Names))]
    public void Streaming_matches_full_decode_without_replacement_characters(string name)
    {
        var tokenizer = TestAssets.Load(name);
        var texts = RandomText.Generate(seed: 7, 200);
        texts.AddRange(["👨‍👩‍👧‍👦 家族 🇯🇵 𠀀𪚥 한국어", "e\u0301 ﬁ 𝐀𝐁 🧑🏿‍💻", "日本語のテキスト😀😀😀"]);
        foreach (var text in texts)
        {
            var ids = tokenizer.Encode(text, addSpecialTokens: false);
            var detokenizer = new IncrementalDetokenizer(tokenizer, []);
            var streamed = string.Concat(ids.Select(detokenizer.Append));
            var full = tokenizer.Decode(ids);
            Assert.Equal(full, streamed);
            Assert.Equal(full, detokenizer.Output);
            if (!full.Contains('\uFFFD')) Assert.DoesNotContain('\uFFFD', streamed);
        }
    }

    /// <summary>After a prompt, the output is what decoding prompt + output adds to the prompt's text (vLLM's window keeps SentencePiece's leading space).</summary>
    [Theory]
    [MemberData(nameof(Names))]
    public void Output_after_a_prompt_continues_the_prompt_text(string name)
    {
        var tokenizer = TestAssets.Load(name);
        var prompt = tokenizer.Encode("Describe the picture: ", addSpecialTokens: true);
        var generated = tokenizer.Encode("A cat 🐱 sits on 日本 mat.", addSpecialTokens: false);
        var detokenizer = new IncrementalDetokenizer(tokenizer, prompt);
        foreach (var id in generated) Assert.DoesNotContain('\uFFFD', detokenizer.Append(id));

        var promptText = tokenizer.Decode(prompt);
        var fullText = tokenizer.Decode([.. prompt, .. generated]);
        Assert.StartsWith(promptText, fullText, StringComparison.Ordinal);
        Assert.Equal(fullText[promptText.Length..], detokenizer.Output);
    }

    [Fact]
    public void Byte_fallback_character_is_held_until_its_last_byte()
    {
        var llama2 = TestAssets.Load("llama2");
        // 😀 is F0 9F 98 80: four byte-fallback tokens (<0x00> is id 3).
        var detokenizer = new IncrementalDetokenizer(llama2, [1]);
        Assert.Equal("", detokenizer.Append(3 + 0xF0));
        Assert.Equal("", detokenizer.Append(3 + 0x9F));
        Assert.Equal("", detokenizer.Append(3 + 0x98));
        Assert.Equal("😀", detokenizer.Append(3 + 0x80));
    }

    [Fact]
    public void Byte_level_character_is_held_until_complete()
    {
        var qwen = TestAssets.Load("qwen3");
        var ids = qwen.Encode("👨‍👩‍👧", addSpecialTokens: false);
        var detokenizer = new IncrementalDetokenizer(qwen, []);
        var chunks = ids.Select(detokenizer.Append).ToList();
        Assert.Contains("", chunks); // at least one token ends mid-character and emits nothing
        Assert.All(chunks, c => Assert.DoesNotContain('\uFFFD', c));
        Assert.Equal("👨‍👩‍👧", string.Concat(chunks));
    }

    [Fact]
    public void Byte_that_can_never_be_valid_is_emitted_at_once()
    {
        var llama2 = TestAssets.Load("llama2");
        var detokenizer = new IncrementalDetokenizer(llama2, []);
        Assert.Equal("\uFFFD", detokenizer.Append(3 + 0x80)); // a lone continuation byte
        Assert.Equal("\uFFFD", detokenizer.Output);
    }

    [Fact]
    public void Kept_special_tokens_are_spaced_when_asked()
    {
        var qwen = TestAssets.Load("qwen3");
        var ids = qwen.Encode("<|im_start|>user\nhi<|im_end|>", addSpecialTokens: false);

        var spaced = new IncrementalDetokenizer(qwen, [], skipSpecialTokens: false, spacesBetweenSpecialTokens: true);
        foreach (var id in ids) spaced.Append(id);
        Assert.Equal("<|im_start|> user\nhi <|im_end|>", spaced.Output);

        var plain = new IncrementalDetokenizer(qwen, [], skipSpecialTokens: false, spacesBetweenSpecialTokens: false);
        foreach (var id in ids) plain.Append(id);
        Assert.Equal("<|im_start|>user\nhi<|im_end|>", plain.Output);

        var skipped = new IncrementalDetokenizer(qwen, []);
        foreach (var id in ids) skipped.Append(id);
        Assert.Equal("user\nhi", skipped.Output);
    }
}
