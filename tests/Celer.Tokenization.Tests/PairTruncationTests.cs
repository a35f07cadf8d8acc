using Celer.TestSupport;

namespace Celer.Tokenization.Tests;

/// <summary>
/// HF's <c>truncation=True, max_length=k</c> on a pair (vLLM's <c>truncate_prompt_tokens</c> for a cross-encoder): the
/// longest_first strategy, from the right, worked out by hand from HF tokenizers' rules on BERT's template (3 special
/// tokens): the shorter text is kept whole when it fits in half the room and the longer is cut to the rest, else each
/// gets half of the room and the longer one the odd token.
/// </summary>
public sealed class PairTruncationTests
{
    private static readonly Tokenizer Bert = Tokenizer.FromFile(Path.Combine(RepoPaths.Fixtures, "encoders", "bert-cross-encoder", "tokenizer.json"));

    /// <summary>"the" is one token of the fixture's vocabulary, "dog" another: n of them is n tokens.</summary>
    private static string Words(string word, int n) => string.Join(' ', Enumerable.Repeat(word, n));

    [Theory]
    [InlineData(3, 4, 20, 3, 4)]      // fits: nothing cut
    [InlineData(5, 30, 20, 5, 12)]    // the shorter fits in half the room (17): the longer takes the rest
    [InlineData(30, 5, 20, 12, 5)]    // and the other way round
    [InlineData(10, 30, 20, 8, 9)]    // the shorter takes more than half: halves, the odd token to the longer
    [InlineData(15, 15, 20, 8, 9)]    // neither fits beside the other: halves, the odd token to the second
    [InlineData(40, 12, 21, 9, 9)]    // the shorter alone is more than half: halves of 18
    [InlineData(40, 13, 22, 10, 9)]   // 19 of room: the longer (first) text gets the odd one
    public void A_pair_is_cut_longest_first(int first, int second, int maxLength, int keptFirst, int keptSecond)
    {
        int the = Bert.Encode("the", addSpecialTokens: false).Single(), dog = Bert.Encode("dog", addSpecialTokens: false).Single();
        EncodedInput encoded = Bert.EncodeWithTypes(Words("the", first), Words("dog", second), maxLength: maxLength);
        Assert.Equal(keptFirst, encoded.InputIds.Count(id => id == the));
        Assert.Equal(keptSecond, encoded.InputIds.Count(id => id == dog));
        Assert.Equal(keptFirst + keptSecond + 3, encoded.InputIds.Length);
        Assert.Equal(Bert.EncodeWithTypes(Words("the", keptFirst), Words("dog", keptSecond)).InputIds, encoded.InputIds);
    }

    [Fact]
    public void A_single_text_keeps_its_first_tokens_and_too_small_a_length_is_refused()
    {
        EncodedInput encoded = Bert.EncodeWithTypes(Words("the", 10), maxLength: 6);
        Assert.Equal(Bert.EncodeWithTypes(Words("the", 4)).InputIds, encoded.InputIds);
        Assert.Throws<ArgumentOutOfRangeException>(() => Bert.EncodeWithTypes("the", "dog", maxLength: 2));
    }
}
