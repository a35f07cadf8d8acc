using System.Text.Json.Nodes;
using Celer.Tokenization.Normalizers;

namespace Celer.Tokenization.Tests;

/// <summary>
/// The Unigram pipeline on the real t5-small tokenizer.json and on small hand-made files: ids checked in the vocabulary,
/// T5's and XLM-RoBERTa's pairs against HF's halves, decode round trips, and each rule of HF's Unigram model and
/// Precompiled normalizer that random text seldom decides (ties, the unk penalty, fused unknowns, byte fallback, serde's
/// reading of scores, the shortest-prefix quirk), each also run through HF tokenizers.
/// </summary>
public class UnigramTests
{
    private const int Eos = UnigramFixture.Eos, Unk = UnigramFixture.Unk, Space = UnigramFixture.Metaspace;

    private static Tokenizer T5 => UnigramFixture.Load();

    // The ids are the pieces named in each comment (t5-small's vocabulary), then </s>.
    [Theory]
    [InlineData("Hello world", new[] { 8774, 296, Eos })] // ▁Hello ▁world
    [InlineData("Hello  \t world\n", new[] { 8774, 296, Eos })] // WhitespaceSplit drops every space
    [InlineData("e\u0301", new[] { Space, 154, Eos })] // ▁ é: the charsmap composes e + U+0301
    [InlineData("\uFF45\u0301", new[] { Space, 15, Eos })] // ▁ e: ｅ́ is one short cluster whose shortest entry, ｅ → e, drops the accent
    [InlineData("<extra_id_0>hi", new[] { 32099, 7102, Eos })] // <extra_id_0> ▁hi
    [InlineData("", new[] { Eos })]
    [InlineData("\r\n", new[] { Eos })]
    public void Encode_gives_the_vocabulary_ids(string text, int[] expected)
    {
        Assert.Equal(expected, T5.Encode(text));
        Assert.Equal(expected, UnigramFixture.Reference().Encode(text).Select(i => (int)i));
    }

    [Fact]
    public void Pieces_decode_to_the_text()
    {
        Assert.Equal("▁Hello", T5.IdToToken(8774));
        Assert.Equal(8774, T5.TokenToId("▁Hello"));
        Assert.Equal(32100, T5.VocabSize);
        Assert.True(T5.IsSpecialToken(Eos));
        Assert.Equal("Hello world", T5.Decode([8774, 296, Eos]));
        Assert.Equal("Hello world</s>", T5.Decode([8774, 296, Eos], skipSpecialTokens: false));
    }

    /// <summary>Text the vocabulary covers, already normalized and singly spaced, comes back unchanged.</summary>
    [Theory]
    [InlineData("The quick brown fox jumps over the lazy dog.")]
    [InlineData("translate English to German: That is good.")]
    [InlineData("Les élèves ont lu « Le Petit Prince » à l'école.")]
    [InlineData("Die Straße ist schön, sagte der Bäcker.")]
    [InlineData("summarize: studies have shown that owning a dog is good for you")]
    public void Decode_round_trips_covered_text(string text)
    {
        foreach (var tokenizer in new[] { T5, UnigramFixture.Ours(UnigramFixture.ModernPipeline()) })
        {
            var ids = tokenizer.Encode(text, addSpecialTokens: false);
            Assert.DoesNotContain(Unk, ids);
            Assert.Equal(text, tokenizer.Decode(ids));
        }
        Assert.Equal(text, UnigramFixture.Reference().Decode([.. UnigramFixture.Reference().Encode(text)]));
    }

    public static TheoryData<string> Framings() => new(["T5 (as committed)", "XLM-R RobertaProcessing", "XLM-R TemplateProcessing"]);

    /// <summary>
    /// HF encodes each text of a pair on its own and then frames them, so a pair is checked against HF's ids for the two
    /// texts (from the same file without its post-processor) put in the template: T5 <c>A &lt;/s&gt; B &lt;/s&gt;</c>,
    /// XLM-RoBERTa <c>&lt;s&gt; A &lt;/s&gt;&lt;/s&gt; B &lt;/s&gt;</c>, every type id 0.
    /// </summary>
    [Theory]
    [MemberData(nameof(Framings))]
    public void Pairs_are_framed_as_hf_frames_them(string framing)
    {
        var json = framing switch
        {
            "T5 (as committed)" => UnigramFixture.Json(),
            "XLM-R RobertaProcessing" => UnigramFixture.XlmRobertaStyle(UnigramFixture.RobertaProcessing),
            _ => UnigramFixture.XlmRobertaStyle(UnigramFixture.XlmRobertaTemplate),
        };
        var ours = UnigramFixture.Ours((JsonObject)json.DeepClone());
        json["post_processor"] = null;
        using var bare = UnigramFixture.Reference(json);
        int[] Hf(string text) => [.. bare.Encode(text).Select(i => (int)i)];

        var texts = UnigramTexts.All(seed: 11, count: 60);
        for (int i = 0; i + 1 < texts.Count; i += 2)
        {
            string a = texts[i], b = texts[i + 1];
            int[] expected = framing.StartsWith("T5", StringComparison.Ordinal)
                ? [.. Hf(a), Eos, .. Hf(b), Eos]
                : [UnigramFixture.Bos, .. Hf(a), Eos, Eos, .. Hf(b), Eos];
            var encoded = ours.EncodeWithTypes(a, b);
            Assert.True(expected.SequenceEqual(encoded.InputIds), $"{ParityTests.Escape(a)} / {ParityTests.Escape(b)}");
            Assert.All(encoded.TokenTypeIds, t => Assert.Equal(0, t));

            var bareIds = ours.EncodeWithTypes(a, b, addSpecialTokens: false);
            Assert.Equal([.. Hf(a), .. Hf(b)], bareIds.InputIds);
        }
    }

    [Fact]
    public void Xlm_roberta_pair_of_known_texts()
    {
        var ours = UnigramFixture.Ours(UnigramFixture.XlmRobertaStyle(UnigramFixture.RobertaProcessing));
        var encoded = ours.EncodeWithTypes("Hello world", "Hello");
        // <s> ▁Hello ▁world </s> </s> ▁Hello </s>
        Assert.Equal([UnigramFixture.Bos, 8774, 296, Eos, Eos, 8774, Eos], encoded.InputIds);
        Assert.Equal([0, 0, 0, 0, 0, 0, 0], encoded.TokenTypeIds);
        Assert.Equal([UnigramFixture.Bos, 8774, 296, Eos], ours.Encode("Hello world"));
        Assert.Equal("Hello world", ours.Decode(ours.Encode("Hello world")));
    }

    /// <summary>A Unigram model alone (no normalizer, pre-tokenizer or decoder), on ours and on HF.</summary>
    private static (Tokenizer Ours, Tokenizers.DotNet.Tokenizer Hf) Model(string vocab, string unkId = "0", bool byteFallback = false, bool tagged = true)
    {
        string type = tagged ? "\"type\":\"Unigram\"," : "";
        string model = $"{{{type}\"unk_id\":{unkId},\"vocab\":{vocab},\"byte_fallback\":{(byteFallback ? "true" : "false")}}}";
        string json = $$"""
            {"version":"1.0","added_tokens":[],"normalizer":null,"pre_tokenizer":null,"post_processor":null,"decoder":null,"model":{{model}}}
            """;
        return (Tokenizer.FromJson(json), UnigramFixture.Reference(json));
    }

    private static void AssertBoth((Tokenizer Ours, Tokenizers.DotNet.Tokenizer Hf) t, string text, int[] expected)
    {
        Assert.Equal(expected, t.Ours.Encode(text));
        Assert.Equal(expected, t.Hf.Encode(text).Select(i => (int)i));
    }

    [Fact]
    public void Ties_keep_the_path_found_first()
    {
        // "ab" (-2) ties "a" + "b" (-2): the piece from the earlier start is found first and kept. In "abc", a + bc and
        // ab + c tie too; the node at the end is reached from "bc" (start 1) before "c" (start 2), so a + bc wins.
        var t = Model("""[["<unk>",0],["a",-1],["b",-1],["ab",-2],["bc",-1],["c",-1]]""");
        AssertBoth(t, "ab", [3]);
        AssertBoth(t, "abc", [1, 4]);
        t.Hf.Dispose();
    }

    [Fact]
    public void An_unknown_character_scores_the_lowest_score_minus_10()
    {
        // "abq": "q" has no piece. ab + unknown q scores -1 + (-30 - 10); a + bq scores s(a) - 30. With the penalty of
        // 10, the first wins when s(a) < -11 and loses when s(a) > -11, which -11.5 and -10.5 pin down.
        var lower = Model("""[["<unk>",0],["a",-11.5],["b",-5],["ab",-1],["bq",-30]]""");
        AssertBoth(lower, "abq", [3, 0]);
        lower.Hf.Dispose();
        var higher = Model("""[["<unk>",0],["a",-10.5],["b",-5],["ab",-1],["bq",-30]]""");
        AssertBoth(higher, "abq", [1, 4]);
        higher.Hf.Dispose();
    }

    [Fact]
    public void Runs_of_unknown_characters_fuse_into_one_token()
    {
        // Any node with the unk id fuses, a literal "<unk>" piece too; the fused text is then looked up as a piece.
        var t = Model("""[["<unk>",0],["a",-1],["b",-4],["<unk>x",-1]]""");
        AssertBoth(t, "bx", [2, 0]);
        AssertBoth(t, "zzzaqq", [0, 1, 0]);
        AssertBoth(t, "a<unk>zz", [1, 0]);
        AssertBoth(t, "<unk>x", [3]);
        AssertBoth(t, "😀😀a😀", [0, 1, 0]);
        t.Hf.Dispose();
    }

    [Fact]
    public void Byte_fallback_needs_every_byte_of_the_fused_run()
    {
        // Only é's bytes (C3 A9) exist: "é" becomes them, "è" (C3 A8) and "zé" (7A C3 A9) are unk.
        var t = Model("""[["<unk>",-1],["a",-1],["<0xC3>",0],["<0xA9>",0]]""", byteFallback: true);
        AssertBoth(t, "aéa", [1, 2, 3, 1]);
        AssertBoth(t, "aèa", [1, 0, 1]);
        AssertBoth(t, "aéèa", [1, 0, 1]);
        AssertBoth(t, "azé", [1, 0]);
        t.Hf.Dispose();
    }

    [Fact]
    public void Without_an_unk_id_an_unknown_character_is_an_error()
    {
        var t = Model("""[["a",-1],["b",-2]]""", unkId: "null");
        AssertBoth(t, "ab", [0, 1]);
        AssertBoth(t, "", []);
        Assert.Throws<Tokenizers.DotNet.TokenizerException>(() => t.Hf.Encode("abc"));
        Assert.Throws<InvalidOperationException>(() => t.Ours.Encode("abc"));
        t.Hf.Dispose();
    }

    [Fact]
    public void A_repeated_piece_encodes_to_its_later_id_and_both_ids_decode()
    {
        var t = Model("""[["<unk>",-1],["a",-1],["b",-1],["a",-5]]""");
        AssertBoth(t, "a", [3]);
        AssertBoth(t, "aab", [3, 3, 2]);
        Assert.Equal("a", t.Ours.IdToToken(1));
        Assert.Equal("a", t.Ours.IdToToken(3));
        Assert.Equal(3, t.Ours.TokenToId("a"));
        Assert.Equal(4, t.Ours.VocabSize);
        Assert.Equal(t.Hf.Decode([1, 3]), t.Ours.Decode([1, 3]));
        t.Hf.Dispose();
    }

    [Fact]
    public void A_model_without_type_is_unigram_when_its_vocab_is_a_list()
    {
        var t = Model("""[["<unk>",0],["a",-1],["b",-1]]""", tagged: false);
        AssertBoth(t, "abz", [1, 2, 0]);
        t.Hf.Dispose();
    }

    /// <summary>
    /// "-7.4974141120910645" is -7.497414112091064 to serde_json (its digits to a double, then divided by 1e16) but
    /// -7.4974141120910645's nearest double to .NET, one bit lower. With "a" scored -7.497414112091064, "ab" ties a + b
    /// under serde's reading and keeps "ab"; read correctly, a + b would be higher and win.
    /// </summary>
    [Fact]
    public void Scores_are_read_as_serde_json_reads_them()
    {
        Assert.NotEqual(-7.497414112091064, double.Parse("-7.4974141120910645", System.Globalization.CultureInfo.InvariantCulture));
        var t = Model("""[["<unk>",0],["a",-7.497414112091064],["b",0.0],["ab",-7.4974141120910645]]""");
        AssertBoth(t, "ab", [3]);
        t.Hf.Dispose();
    }

    [Theory]
    [InlineData("-7.4974141120910645", -7.497414112091064)]
    [InlineData("-2.0122928619384766", -2.012292861938477)] // t5-small's score of "▁"
    [InlineData("0.0", 0.0)]
    [InlineData("-5", -5.0)]
    [InlineData("1.5e-5", 1.5e-05)]
    [InlineData("12345678901234567890123", 1.2345678901234568e+22)] // u64 overflows: the last 3 digits only scale
    [InlineData("1844674407370955161.55", 1.8446744073709553e+18)] // one more fraction digit fits u64, the next does not
    [InlineData("5e-323", 5e-323)] // past 1e308: divided by 1e308 first
    [InlineData("1e-99999999999", 0.0)] // exponent overflows i32: zero
    public void Serde_json_float_parsing(string text, double expected)
    {
        Assert.Equal(BitConverter.DoubleToInt64Bits(expected), BitConverter.DoubleToInt64Bits(SerdeJsonFloat.Parse(text)!.Value));
    }

    [Fact]
    public void Serde_json_float_out_of_range_and_negative_zero()
    {
        Assert.Null(SerdeJsonFloat.Parse("1e309"));
        Assert.Null(SerdeJsonFloat.Parse("1e99999999999"));
        Assert.True(double.IsNegative(SerdeJsonFloat.Parse("-0")!.Value));
        Assert.True(double.IsNegative(SerdeJsonFloat.Parse("-0.0")!.Value));
    }

    [Fact]
    public void Precompiled_normalizer_rewrites_clusters_as_hf_does()
    {
        var normalizer = (PrecompiledNormalizer)Normalizer.Parse(
            System.Text.Json.JsonDocument.Parse($$"""{"type":"Precompiled","precompiled_charsmap":"{{UnigramFixture.Charsmap()}}"}""").RootElement, "$")!;
        Assert.Equal("Hello world", normalizer.Normalize("Hello world"));
        Assert.Equal("ABC abc 123", normalizer.Normalize("ＡＢＣ ａｂｃ １２３"));
        Assert.Equal("fi TM 1\u20442", normalizer.Normalize("ﬁ ™ ½"));
        Assert.Equal("\u00E9", normalizer.Normalize("e\u0301"));
        // ｅ́ is a 5-byte cluster: looked up whole, its shortest entry (ｅ) wins and the accent goes.
        Assert.Equal("e", normalizer.Normalize("\uFF45\u0301"));
        // ａ̈̄ is 7 bytes: each character on its own, the accents kept.
        Assert.Equal("a\u0308\u0304", normalizer.Normalize("\uFF41\u0308\u0304"));
        // CR LF is one cluster; only CR's entry (a space) is used. A NUL ends the lookup and stays.
        Assert.Equal(" ", normalizer.Normalize("\r\n"));
        Assert.Equal("a\0b", normalizer.Normalize("a\0b"));
        Assert.Equal("ab", normalizer.Normalize("a\u0001b"));
    }

    [Fact]
    public void A_lone_legacy_add_prefix_space_false_reads_as_prepend_scheme_never()
    {
        // HF 0.22 refuses {"add_prefix_space": false} without prepend_scheme (its default is "always"); older HF versions
        // wrote such files meaning "never", and Celer reads them so rather than turn the checkpoint away.
        var json = UnigramFixture.ModernPipeline();
        json["pre_tokenizer"] = JsonNode.Parse("""{"type":"Metaspace","replacement":"▁","add_prefix_space":false}""");
        Assert.Throws<Tokenizers.DotNet.TokenizerException>(() => UnigramFixture.Reference((JsonObject)json.DeepClone()));
        var ours = UnigramFixture.Ours((JsonObject)json.DeepClone());

        json["pre_tokenizer"] = JsonNode.Parse("""{"type":"Metaspace","replacement":"▁","add_prefix_space":true,"prepend_scheme":"never"}""");
        using var hf = UnigramFixture.Reference(json);
        // No "▁" in front: "Hello" is not ▁Hello (8774).
        Assert.Equal(hf.Encode("Hello world").Select(i => (int)i), ours.Encode("Hello world"));
        Assert.NotEqual(8774, ours.Encode("Hello world")[0]);
    }
}
