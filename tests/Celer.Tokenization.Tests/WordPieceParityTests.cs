using System.Text;
using System.Text.Json.Nodes;

namespace Celer.Tokenization.Tests;

/// <summary>
/// Exact parity with HF tokenizers (Rust, through Tokenizers.DotNet) on the real all-MiniLM-L6-v2 tokenizer.json and on
/// variants of it that switch each BERT-pipeline setting and swap in the other normalizers, pre-tokenizers, models,
/// post-processors and decoders HF defines. The reference encodes one text with special tokens and decodes skipping
/// them, so that is what is compared here; pairs and type ids are in <see cref="WordPieceTests"/>.
/// </summary>
public class WordPieceParityTests
{
    private const int StringsPerVariant = 400;

    /// <summary>Texts that reach what random text rarely does: each BERT rule's edge, and where Unicode versions differ.</summary>
    private static readonly string[] EdgeTexts =
    [
        "hello world", "Hello, World!", "unaffable", "UNAFFABLE running", "Héllo naïve café RÉSUMÉ", "İstanbul ΣΑΣ Kelvin\u212A",
        "你好世界 and 日本語 with 한국어", "𠀀𪚥 \u3400 \uF900 \u2F800", "[CLS] hello [SEP] world [MASK] [UNK] [PAD] [cls] [ MASK ]",
        "a\u0000b\uFFFDc\u0001d\u007Fe\u00ADf\u200Bg", "tab\tnew\nline\r\nvt\u000Bff\u000Cnel\u0085nbsp\u00A0ideo\u3000end",
        "\u1680\u2000\u200A\u2028\u2029\u202F\u205F", "$5 + 3 = 8; x^2 | y ~ z `q` <a> {b} [c] @d #e %f &g *h _i", "don't it's I'm we've they're",
        "¿Qué? ¡Sí! «quote» “curly” — dash – en … ellipsis", "a\u2E45b a\u2E4Fb", "x\u08E2y \U0001E944z", "e\u0301 a\u0308\u0323 n\u0303",
        "\uE000private\U000F0000use", "12345 3.14 1,000 ²³ Ⅻ ① ٣٤", "Ⓐⓑ \U0001F130 \U0001F170 x\u200Cy\u200Dz",
        new string('a', 99), new string('a', 100), new string('a', 101), new string('é', 101), string.Concat(Enumerable.Repeat("\U0001D400", 100)),
        string.Concat(Enumerable.Repeat("\U0001D400", 101)), "supercalifragilisticexpialidocious antidisestablishmentarianism",
        "", " ", "   \n\t  ", "ǅ ǈ ß ẞ ﬁ ﬀ", "Ελληνικά Привет مرحبا שלום नमस्ते สวัสดี", "😀 👍🏽 👨‍👩‍👧‍👦 🇫🇷",
    ];

    private static readonly string[] BertSpecials = ["[CLS]", "[SEP]", "[MASK]", "[UNK]", "[PAD]", "[cls]", "[MASK"];

    /// <summary>The shared random texts, some with BERT's special tokens and over-long words mixed in.</summary>
    private static List<string> Texts(int seed, int count)
    {
        var random = new Random(seed);
        var texts = new List<string>(EdgeTexts);
        foreach (var text in RandomText.Generate(seed, count))
        {
            int at = random.Next(text.Length + 1);
            if (at > 0 && at < text.Length && char.IsLowSurrogate(text[at])) at--; // never between a surrogate pair
            texts.Add(random.Next(6) switch
            {
                0 => text.Insert(at, BertSpecials[random.Next(BertSpecials.Length)]),
                1 => text + " " + new string((char)random.Next('a', 'z' + 1), random.Next(95, 106)),
                _ => text,
            });
        }
        return texts;
    }

    [Fact]
    public void Committed_file_matches_hf_tokenizers() =>
        AssertParity("as committed", WordPieceFixture.Load(), WordPieceFixture.Reference(), seed: 2024);

    public static TheoryData<string> Variants() => new(VariantEdits.Keys);

    [Theory]
    [MemberData(nameof(Variants))]
    public void Variant_matches_hf_tokenizers(string variant)
    {
        var json = WordPieceFixture.Json();
        VariantEdits[variant](json);
        var ours = WordPieceFixture.Ours((JsonObject)json.DeepClone());
        using var reference = WordPieceFixture.Reference(json);
        AssertParity(variant, ours, reference, seed: variant.Length * 31 + 7);
    }

    private static JsonNode Node(string json) => JsonNode.Parse(json)!;

    /// <summary>Each variant changes one part of the real file; the vocabulary stays bert-base-uncased's.</summary>
    private static readonly Dictionary<string, Action<JsonObject>> VariantEdits = new()
    {
        ["bert normalizer: cased, accents kept"] = j => j["normalizer"] = Node("""{"type":"BertNormalizer","clean_text":true,"handle_chinese_chars":true,"strip_accents":null,"lowercase":false}"""),
        ["bert normalizer: lowercase, accents kept"] = j => j["normalizer"] = Node("""{"type":"BertNormalizer","clean_text":true,"handle_chinese_chars":true,"strip_accents":false,"lowercase":true}"""),
        ["bert normalizer: accents stripped, cased"] = j => j["normalizer"] = Node("""{"type":"BertNormalizer","clean_text":true,"handle_chinese_chars":true,"strip_accents":true,"lowercase":false}"""),
        ["bert normalizer: no cleanup, no chinese"] = j => j["normalizer"] = Node("""{"type":"BertNormalizer","clean_text":false,"handle_chinese_chars":false,"strip_accents":null,"lowercase":true}"""),
        ["normalizers: NFD, StripAccents, Lowercase"] = j => j["normalizer"] = Node("""{"type":"Sequence","normalizers":[{"type":"NFD"},{"type":"StripAccents"},{"type":"Lowercase"}]}"""),
        ["normalizers: NFKD, Lowercase"] = j => j["normalizer"] = Node("""{"type":"Sequence","normalizers":[{"type":"NFKD"},{"type":"Lowercase"}]}"""),
        ["no normalizer"] = j => j["normalizer"] = null,
        ["pre-tokenizer: Whitespace"] = j => j["pre_tokenizer"] = Node("""{"type":"Whitespace"}"""),
        ["pre-tokenizer: WhitespaceSplit"] = j => j["pre_tokenizer"] = Node("""{"type":"WhitespaceSplit"}"""),
        ["pre-tokenizer: WhitespaceSplit, Punctuation contiguous, Digits"] = j => j["pre_tokenizer"] = Node(
            """{"type":"Sequence","pretokenizers":[{"type":"WhitespaceSplit"},{"type":"Punctuation","behavior":"Contiguous"},{"type":"Digits","individual_digits":false}]}"""),
        ["pre-tokenizer: Punctuation merged with previous, individual digits"] = j => j["pre_tokenizer"] = Node(
            """{"type":"Sequence","pretokenizers":[{"type":"Punctuation","behavior":"MergedWithPrevious"},{"type":"Digits","individual_digits":true},{"type":"WhitespaceSplit"}]}"""),
        ["pre-tokenizer: Punctuation default behavior, then Bert"] = j => j["pre_tokenizer"] = Node(
            """{"type":"Sequence","pretokenizers":[{"type":"Punctuation"},{"type":"BertPreTokenizer"}]}"""),
        ["model: WordPiece, 8 chars per word, prefix ##"] = j => j["model"]!["max_input_chars_per_word"] = 8,
        ["model: WordLevel"] = j =>
        {
            var model = j["model"]!.AsObject();
            model["type"] = "WordLevel";
            model.Remove("continuing_subword_prefix");
            model.Remove("max_input_chars_per_word");
        },
        ["post-processor: BertProcessing"] = j => j["post_processor"] = Node("""{"type":"BertProcessing","sep":["[SEP]",102],"cls":["[CLS]",101]}"""),
        ["post-processor: RobertaProcessing"] = j => j["post_processor"] = Node(
            """{"type":"RobertaProcessing","sep":["[SEP]",102],"cls":["[CLS]",101],"trim_offsets":true,"add_prefix_space":false}"""),
        ["post-processor: two-token template"] = j => j["post_processor"] = Node(
            """{"type":"TemplateProcessing","single":[{"SpecialToken":{"id":"[CLS]","type_id":0}},{"SpecialToken":{"id":"[MASK]","type_id":1}},{"Sequence":{"id":"A","type_id":2}},{"SpecialToken":{"id":"[SEP]","type_id":0}}],"pair":[{"Sequence":{"id":"A","type_id":0}},{"Sequence":{"id":"B","type_id":1}}],"special_tokens":{"[CLS]":{"id":"[CLS]","ids":[101],"tokens":["[CLS]"]},"[SEP]":{"id":"[SEP]","ids":[102],"tokens":["[SEP]"]},"[MASK]":{"id":"[MASK]","ids":[103,100],"tokens":["[MASK]","[UNK]"]}}}"""),
        ["post-processor: Sequence of ByteLevel and Bert"] = j => j["post_processor"] = Node(
            """{"type":"Sequence","processors":[{"type":"ByteLevel","add_prefix_space":false,"trim_offsets":true,"use_regex":true},{"type":"BertProcessing","sep":["[SEP]",102],"cls":["[CLS]",101]}]}"""),
        ["no post-processor"] = j => j["post_processor"] = null,
        ["decoder: WordPiece without cleanup"] = j => j["decoder"] = Node("""{"type":"WordPiece","prefix":"##","cleanup":false}"""),
        ["decoder: WordPiece with another prefix"] = j => j["decoder"] = Node("""{"type":"WordPiece","prefix":"un","cleanup":true}"""),
    };

    private static void AssertParity(string what, Tokenizer ours, Tokenizers.DotNet.Tokenizer reference, int seed)
    {
        var failures = new List<string>();
        foreach (var text in Texts(seed, StringsPerVariant))
        {
            var expected = reference.Encode(text).Select(i => (int)i).ToArray();
            var actual = ours.Encode(text, addSpecialTokens: true);
            if (!expected.SequenceEqual(actual))
            {
                failures.Add($"encode {ParityTests.Escape(text)}\n  expected [{string.Join(",", expected)}]\n  actual   [{string.Join(",", actual)}]");
                continue;
            }
            var expectedText = reference.Decode(expected.Select(i => (uint)i).ToArray());
            var actualText = ours.Decode(actual, skipSpecialTokens: true);
            if (expectedText != actualText)
                failures.Add($"decode {ParityTests.Escape(text)}\n  expected {ParityTests.Escape(expectedText)}\n  actual   {ParityTests.Escape(actualText)}");
        }
        Assert.True(failures.Count == 0, $"{failures.Count} texts differ ({what}):\n" + string.Join("\n", failures.Take(8)));
    }
}
