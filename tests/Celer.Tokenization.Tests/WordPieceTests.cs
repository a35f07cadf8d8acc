using System.Text.Json;

namespace Celer.Tokenization.Tests;

/// <summary>
/// The BERT pipeline on the real all-MiniLM-L6-v2 tokenizer.json (bert-base-uncased's vocabulary): ids that can be
/// checked by hand in the vocabulary, text pairs with token type ids, decoding, and the file's truncation and padding.
/// </summary>
public class WordPieceTests
{
    private const int Cls = 101, Sep = 102, Unk = 100, Mask = 103;

    private static Tokenizer Bert => WordPieceFixture.Load();

    // Each expectation is the vocabulary's ids for the tokens in the comment: lowercased, accents stripped, punctuation
    // and CJK ideographs split off, each word cut greedily into the longest pieces the vocabulary has.
    [Theory]
    [InlineData("hello world", new[] { Cls, 7592, 2088, Sep })] // hello world
    [InlineData("Hello, World!", new[] { Cls, 7592, 1010, 2088, 999, Sep })] // hello , world !
    [InlineData("unaffable", new[] { Cls, 14477, 20961, 3468, Sep })] // una ##ffa ##ble: "una" is longer than "un"
    [InlineData("tokenization huggingface", new[] { Cls, 19204, 3989, 17662, 12172, Sep })] // token ##ization hugging ##face
    [InlineData("Héllo CAFÉ naïve", new[] { Cls, 7592, 7668, 15743, Sep })] // hello cafe naive
    [InlineData("你好，世界", new[] { Cls, Unk, Unk, 1989, 1745, Unk, Sep })] // 你 好 ， 世 界: only ， and 世 are in the vocabulary
    [InlineData("hello🤖 world", new[] { Cls, Unk, 2088, Sep })] // "hello" fits but "##🤖" does not: the whole word is [UNK]
    [InlineData("[CLS] hi [MASK]", new[] { Cls, Cls, 7632, Mask, Sep })] // special tokens in the text are kept whole
    [InlineData("[cls]", new[] { Cls, 1031, 18856, 2015, 1033, Sep })] // [ cl ##s ]: added tokens match case-sensitively
    [InlineData("", new[] { Cls, Sep })]
    [InlineData("a\u0000b\uFFFD\u00AD", new[] { Cls, 11113, Sep })] // control, U+FFFD and soft hyphen dropped: "ab"
    public void Encode_gives_the_vocabulary_ids(string text, int[] expected)
    {
        Assert.Equal(expected, Bert.Encode(text));
        Assert.Equal(expected, WordPieceFixture.Reference().Encode(text).Select(i => (int)i));
    }

    [Fact]
    public void A_word_over_max_input_chars_per_word_is_unk()
    {
        // 100 characters is the limit: "aaa" then "##aa" pieces; 101 is one [UNK]. Characters are code points.
        int[] hundred = Bert.Encode(new string('a', 100), addSpecialTokens: false);
        Assert.Equal([13360, .. Enumerable.Repeat(11057, 48), 2050], hundred);
        Assert.Equal([Unk], Bert.Encode(new string('a', 101), addSpecialTokens: false));
    }

    [Fact]
    public void Max_input_chars_per_word_counts_code_points_not_utf16_units()
    {
        // The vocabulary has no astral letters, so a variant adds 𝐀 and ##𝐀 and allows 5 characters per word.
        var json = WordPieceFixture.Json();
        var model = json["model"]!.AsObject();
        model["max_input_chars_per_word"] = 5;
        model["vocab"]!.AsObject()["\U0001D400"] = 30522;
        model["vocab"]!.AsObject()["##\U0001D400"] = 30523;
        var ours = WordPieceFixture.Ours((System.Text.Json.Nodes.JsonObject)json.DeepClone());
        using var hf = WordPieceFixture.Reference(json);
        string five = string.Concat(Enumerable.Repeat("\U0001D400", 5)), six = five + "\U0001D400";
        Assert.Equal([Cls, 30522, 30523, 30523, 30523, 30523, Sep], ours.Encode(five)); // 10 UTF-16 units, 5 characters
        Assert.Equal([Cls, Unk, Sep], ours.Encode(six));
        Assert.Equal(ours.Encode(five), hf.Encode(five).Select(i => (int)i));
        Assert.Equal(ours.Encode(six), hf.Encode(six).Select(i => (int)i));
    }

    [Fact]
    public void Pair_gets_cls_sep_sep_and_type_ids_0_then_1()
    {
        var encoded = Bert.EncodeWithTypes("What is the capital of France?", "Paris is the capital of France.");
        // what is the capital of france ? / paris is the capital of france .
        Assert.Equal([Cls, 2054, 2003, 1996, 3007, 1997, 2605, 1029, Sep, 3000, 2003, 1996, 3007, 1997, 2605, 1012, Sep], encoded.InputIds);
        Assert.Equal([0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1], encoded.TokenTypeIds);
    }

    [Fact]
    public void Type_ids_follow_the_template_without_special_tokens_too()
    {
        var single = Bert.EncodeWithTypes("hello world");
        Assert.Equal([Cls, 7592, 2088, Sep], single.InputIds);
        Assert.Equal([0, 0, 0, 0], single.TokenTypeIds);
        Assert.Equal(Bert.Encode("hello world"), single.InputIds);

        var bare = Bert.EncodeWithTypes("hello world", "how are you?", addSpecialTokens: false);
        Assert.Equal([7592, 2088, 2129, 2024, 2017, 1029], bare.InputIds);
        Assert.Equal([0, 0, 1, 1, 1, 1], bare.TokenTypeIds);
    }

    [Fact]
    public void Roberta_and_bert_processing_frame_pairs_their_own_way()
    {
        var json = WordPieceFixture.Json();
        json["post_processor"] = JsonNodeOf("""{"type":"BertProcessing","sep":["[SEP]",102],"cls":["[CLS]",101]}""");
        var bert = WordPieceFixture.Ours(json).EncodeWithTypes("hello", "world");
        Assert.Equal([Cls, 7592, Sep, 2088, Sep], bert.InputIds);
        Assert.Equal([0, 0, 0, 1, 1], bert.TokenTypeIds);

        // <s> A </s></s> B </s> with every type id 0 (RoBERTa has no segment embeddings).
        json["post_processor"] = JsonNodeOf("""{"type":"RobertaProcessing","sep":["[SEP]",102],"cls":["[CLS]",101],"trim_offsets":true,"add_prefix_space":true}""");
        var roberta = WordPieceFixture.Ours(json).EncodeWithTypes("hello", "world");
        Assert.Equal([Cls, 7592, Sep, Sep, 2088, Sep], roberta.InputIds);
        Assert.Equal([0, 0, 0, 0, 0, 0], roberta.TokenTypeIds);

        // No post-processor: the texts side by side, 0 then 1.
        json["post_processor"] = null;
        var none = WordPieceFixture.Ours(json).EncodeWithTypes("hello", "world");
        Assert.Equal([7592, 2088], none.InputIds);
        Assert.Equal([0, 1], none.TokenTypeIds);
    }

    /// <summary>
    /// The reference only encodes single texts, so each pair is checked against its two halves as HF encodes them
    /// (its [CLS] … [SEP] taken off) put in BERT's template: HF encodes the texts of a pair independently.
    /// </summary>
    [Fact]
    public void Cases_file_matches_hf_tokenizers()
    {
        using var doc = JsonDocument.Parse(File.ReadAllText(WordPieceFixture.CasesPath));
        Assert.Equal([WordPieceFixture.Name], doc.RootElement.GetProperty("tokenizers").EnumerateArray().Select(t => t.GetString()));
        var reference = WordPieceFixture.Reference();
        int[] Hf(string text) => [.. reference.Encode(text).Select(i => (int)i)];
        int pairs = 0;
        foreach (var c in doc.RootElement.GetProperty("cases").EnumerateArray())
        {
            string text = c.GetProperty("text").GetString()!;
            string? pair = c.TryGetProperty("pair", out var p) ? p.GetString() : null;
            var encoded = Bert.EncodeWithTypes(text, pair);
            int[] a = Hf(text);
            if (pair is null)
            {
                Assert.Equal(a, encoded.InputIds);
                Assert.All(encoded.TokenTypeIds, t => Assert.Equal(0, t));
                continue;
            }
            int[] b = Hf(pair)[1..^1];
            Assert.Equal([.. a, .. b, Sep], encoded.InputIds);
            Assert.Equal([.. Enumerable.Repeat(0, a.Length), .. Enumerable.Repeat(1, b.Length + 1)], encoded.TokenTypeIds);
            pairs++;
        }
        Assert.True(pairs >= 5, "cases.json should keep its pairs");
    }

    [Theory]
    [InlineData("the capital of france is paris.")]
    [InlineData("hello, world! how are you?")]
    [InlineData("tokenization of embeddings")]
    public void Decode_round_trips_normalized_text(string text)
    {
        // Lowercase, unaccented text with only . , ! ? as punctuation comes back as it was: "##" pieces join their word
        // and cleanup takes the space before the punctuation out again.
        int[] ids = Bert.Encode(text);
        Assert.Equal(text, Bert.Decode(ids));
        Assert.Equal(text, WordPieceFixture.Reference().Decode([.. ids.Select(i => (uint)i)]));
    }

    [Fact]
    public void Decode_keeps_hf_cleanup_quirks_and_special_tokens_on_request()
    {
        int[] ids = Bert.Encode("It's a test. Don't panic");
        // Cleanup works token by token: " ' " never occurs inside one token, so "it ' s" keeps its spaces; " n't" is not
        // a token either (n ' t are three), unlike " ." which is.
        Assert.Equal("it ' s a test. don ' t panic", Bert.Decode(ids));
        Assert.Equal("[CLS] it ' s a test. don ' t panic [SEP]", Bert.Decode(ids, skipSpecialTokens: false));
        Assert.Equal("[CLS] hello [MASK] [SEP]", Bert.Decode([Cls, 7592, Mask, Sep], skipSpecialTokens: false));
        Assert.Equal("hello", Bert.Decode([Cls, 7592, Mask, Sep]));
    }

    [Fact]
    public void Matches_the_expectation_shipped_with_the_fixture()
    {
        // daulet/tokenizers' tokenizer_test.go, on this very file through HF tokenizers: "this short sentence" without
        // special tokens is this short sentence + 5 × [PAD] (its padding), type ids all 0. Celer leaves the padding out.
        var encoded = Bert.EncodeWithTypes("this short sentence", addSpecialTokens: false);
        Assert.Equal([0x7e7, 0x99c, 0x186b], encoded.InputIds);
        Assert.Equal([0, 0, 0], encoded.TokenTypeIds);
        Assert.Equal(["this", "short", "sentence"], encoded.InputIds.Select(Bert.IdToToken));
    }

    [Fact]
    public void Lookups_cover_the_wordpiece_vocabulary()
    {
        Assert.Equal(30522, Bert.VocabSize);
        Assert.Equal(7592, Bert.TokenToId("hello"));
        Assert.Equal(3468, Bert.TokenToId("##ble"));
        Assert.Equal("##ffa", Bert.IdToToken(20961));
        Assert.True(Bert.IsSpecialToken(Cls));
        Assert.True(Bert.IsSpecialToken(0)); // [PAD]
        Assert.False(Bert.IsSpecialToken(7592));
    }

    /// <summary>
    /// The file sets truncation (256, longest first) and padding (to a multiple of 8 with [PAD] = 0). It loads, and
    /// Celer applies neither, as transformers does (it switches both off for a call that does not ask); the tokenizers
    /// library's own encode applies both, and that is exactly what is left out.
    /// </summary>
    [Fact]
    public void Truncation_and_padding_in_the_file_load_but_are_left_to_the_engine()
    {
        using var doc = JsonDocument.Parse(File.ReadAllText(WordPieceFixture.TokenizerJsonPath));
        Assert.Equal(256, doc.RootElement.GetProperty("truncation").GetProperty("max_length").GetInt32());
        Assert.Equal(8, doc.RootElement.GetProperty("padding").GetProperty("pad_to_multiple_of").GetInt32());

        using var hfWithBoth = WordPieceFixture.Reference(WordPieceFixture.Json(), keepTruncationAndPadding: true);
        string longText = string.Join(' ', Enumerable.Repeat("hello world", 200));
        foreach (var text in new[] { "hello world", "Hello, World! How are you today?", longText })
        {
            int[] ours = Bert.Encode(text);
            if (text == longText) Assert.Equal(402, ours.Length);
            int[] truncated = ours.Length <= 256 ? ours : [.. ours[..255], Sep];
            int[] padded = [.. truncated, .. Enumerable.Repeat(0, (8 - truncated.Length % 8) % 8)];
            Assert.Equal(padded, hfWithBoth.Encode(text).Select(i => (int)i));
        }
    }

    private static System.Text.Json.Nodes.JsonNode JsonNodeOf(string json) => System.Text.Json.Nodes.JsonNode.Parse(json)!;
}
