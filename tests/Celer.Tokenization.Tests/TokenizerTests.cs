namespace Celer.Tokenization.Tests;

/// <summary>Exact ids recorded from HF tokenizers 0.22 (through Tokenizers.DotNet) on the fetched files.</summary>
public class TokenizerTests
{
    [Theory]
    [InlineData("llama3", "Hello world", new[] { 9906, 1917 })]
    [InlineData("llama2", "Hello world", new[] { 1, 22557, 1526 })]
    [InlineData("gemma3", "Hello world", new[] { 2, 9259, 1902 })]
    [InlineData("qwen3", "<|im_start|>hi<|eot_id|> <s> x</s><bos>",
        new[] { 151644, 6023, 27, 91, 68, 354, 842, 91, 29, 366, 82, 29, 856, 522, 82, 1784, 78448, 29 })]
    [InlineData("llama2", "  a\t\nb 😀", new[] { 1, 259, 264, 12, 13, 28726, 28705, 30575 })]
    public void Encode_gives_reference_ids(string name, string text, int[] expected) =>
        Assert.Equal(expected, TestAssets.Load(name).Encode(text));

    [Fact]
    public void Special_tokens_are_added_only_when_asked()
    {
        var gemma = TestAssets.Load("gemma3");
        Assert.Equal([9259, 1902], gemma.Encode("Hello world", addSpecialTokens: false));
        Assert.Equal("<bos>Hello world", gemma.Decode([2, 9259, 1902], skipSpecialTokens: false));
        Assert.Equal("Hello world", gemma.Decode([2, 9259, 1902]));
    }

    [Fact]
    public void Lookups_cover_model_and_added_vocabulary()
    {
        var qwen = TestAssets.Load("qwen3");
        Assert.Equal(151644, qwen.TokenToId("<|im_start|>"));
        Assert.Equal("<|im_start|>", qwen.IdToToken(151644));
        Assert.True(qwen.IsSpecialToken(151644));
        Assert.False(qwen.IsSpecialToken(151657)); // <tool_call> is added but not special
        Assert.False(qwen.IsSpecialToken(9707));
        Assert.Equal("Hello", qwen.IdToToken(9707));
        Assert.Null(qwen.TokenToId("no such token"));
        Assert.Null(qwen.IdToToken(-1));
        Assert.Null(qwen.IdToToken(qwen.VocabSize));
        Assert.Equal(151669, qwen.VocabSize);
    }

    [Fact]
    public void Pair_follows_the_files_pair_template()
    {
        // Gemma 3's pair template is <bos> $A <bos>:1 $B:1; "Hello" is 9259 and " world" 1902 (see above).
        var gemma = TestAssets.Load("gemma3");
        var pair = gemma.EncodeWithTypes("Hello", " world");
        Assert.Equal([2, 9259, 2, 1902], pair.InputIds);
        Assert.Equal([0, 0, 1, 1], pair.TokenTypeIds);
        Assert.Equal([2, 1902], TestAssets.Reference("gemma3").Encode(" world").Select(i => (int)i));

        // Qwen3's post-processor is ByteLevel, which adds nothing: the texts side by side, type ids 0 then 1.
        var qwen = TestAssets.Load("qwen3");
        var side = qwen.EncodeWithTypes("Hello", " world");
        Assert.Equal([.. qwen.Encode("Hello"), .. qwen.Encode(" world")], side.InputIds);
        Assert.Equal([0, 1], side.TokenTypeIds);
    }

    [Theory]
    [MemberData(nameof(ParityTests.Names), MemberType = typeof(ParityTests))]
    public void EncodeWithTypes_of_one_text_is_Encode(string name)
    {
        var tokenizer = TestAssets.Load(name);
        foreach (var text in RandomText.Generate(seed: 5, 200))
        {
            foreach (bool special in new[] { true, false })
            {
                var encoded = tokenizer.EncodeWithTypes(text, addSpecialTokens: special);
                Assert.Equal(tokenizer.Encode(text, special), encoded.InputIds);
                Assert.All(encoded.TokenTypeIds, t => Assert.Equal(0, t));
                Assert.Equal(encoded.InputIds.Length, encoded.TokenTypeIds.Length);
            }
        }
    }

    [Fact]
    public void Decode_drops_ids_outside_the_vocabulary()
    {
        var llama = TestAssets.Load("llama3");
        Assert.Equal("Hello world", llama.Decode([9906, -5, 1917, int.MaxValue]));
    }
}
