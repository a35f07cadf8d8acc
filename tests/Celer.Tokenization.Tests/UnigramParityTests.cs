using System.Text.Json.Nodes;

namespace Celer.Tokenization.Tests;

/// <summary>
/// Exact parity with HF tokenizers (Rust, through Tokenizers.DotNet) on the real t5-small tokenizer.json and on variants
/// of it: the pipeline current T5 and XLM-RoBERTa files have (Precompiled + Replace, Metaspace with prepend_scheme), each
/// prepend scheme, byte fallback, no unk id, other normalizers and decoders, XLM-RoBERTa's framing. The reference encodes
/// one text with special tokens and decodes skipping them, so that is what is compared; pairs are compared to HF's two
/// halves in <see cref="UnigramTests"/>.
/// </summary>
public class UnigramParityTests
{
    private const int StringsPerVariant = 300;

    [Fact]
    public void Committed_file_matches_hf_tokenizers() =>
        AssertParity("as committed", UnigramFixture.Load(), UnigramFixture.Reference(), UnigramTexts.All(seed: 2025, count: 600));

    public static TheoryData<string> Variants() => new(VariantEdits.Keys);

    [Theory]
    [MemberData(nameof(Variants))]
    public void Variant_matches_hf_tokenizers(string variant)
    {
        var json = VariantEdits[variant]();
        var ours = UnigramFixture.Ours((JsonObject)json.DeepClone());
        using var reference = UnigramFixture.Reference(json);
        AssertParity(variant, ours, reference, UnigramTexts.All(seed: variant.Length * 31 + 7, StringsPerVariant));
    }

    /// <summary>Random id sequences reach what text does not: unused ids, stray special tokens, lone byte pieces.</summary>
    [Theory]
    [InlineData("as committed")]
    [InlineData("model: byte fallback, decoder: Llama's")]
    public void Decode_of_random_ids_matches_hf_tokenizers(string variant)
    {
        var json = variant == "as committed" ? UnigramFixture.Json() : VariantEdits[variant]();
        var ours = UnigramFixture.Ours((JsonObject)json.DeepClone());
        using var reference = UnigramFixture.Reference(json);
        var random = new Random(99);
        var failures = new List<string>();
        for (int n = 0; n < 400; n++)
        {
            var ids = new int[random.Next(1, 12)];
            for (int i = 0; i < ids.Length; i++)
                ids[i] = random.Next(4) == 0 ? random.Next(0, 300) : random.Next(0, ours.VocabSize + 2);
            var expected = reference.Decode([.. ids.Select(i => (uint)i)]);
            var actual = ours.Decode(ids, skipSpecialTokens: true);
            if (expected != actual)
                failures.Add($"[{string.Join(",", ids)}]\n  expected {ParityTests.Escape(expected)}\n  actual   {ParityTests.Escape(actual)}");
        }
        Assert.True(failures.Count == 0, $"{failures.Count} decodes differ ({variant}):\n" + string.Join("\n", failures.Take(10)));
    }

    private static JsonNode Node(string json) => JsonNode.Parse(json)!;

    /// <summary>Adds the 256 byte pieces &lt;0x00&gt;…&lt;0xFF&gt; after the vocabulary, scored like SentencePiece's byte pieces (0).</summary>
    private static JsonObject WithBytePieces(JsonObject json)
    {
        var vocab = json["model"]!["vocab"]!.AsArray();
        for (int b = 0; b < 256; b++) vocab.Add(new JsonArray($"<0x{b:X2}>", 0.0));
        json["model"]!["byte_fallback"] = true;
        return json;
    }

    /// <summary>Each variant changes one part of the real file or of its modern pipeline; the pieces stay t5-small's.</summary>
    private static readonly Dictionary<string, Func<JsonObject>> VariantEdits = new()
    {
        ["modern pipeline: Precompiled + Replace, Metaspace always"] = UnigramFixture.ModernPipeline,
        ["XLM-R framing: RobertaProcessing"] = () => UnigramFixture.XlmRobertaStyle(UnigramFixture.RobertaProcessing),
        ["XLM-R framing: TemplateProcessing"] = () => UnigramFixture.XlmRobertaStyle(UnigramFixture.XlmRobertaTemplate),
        ["Metaspace: prepend first, no split"] = () =>
        {
            var j = UnigramFixture.ModernPipeline();
            j["pre_tokenizer"] = Node("""{"type":"Metaspace","replacement":"▁","prepend_scheme":"first","split":false}""");
            j["decoder"] = Node("""{"type":"Metaspace","replacement":"▁","prepend_scheme":"first","split":false}""");
            return j;
        },
        ["Metaspace: prepend never (legacy add_prefix_space false)"] = () =>
        {
            var j = UnigramFixture.ModernPipeline();
            j["pre_tokenizer"] = Node("""{"type":"Metaspace","replacement":"▁","add_prefix_space":false,"prepend_scheme":"never"}""");
            j["decoder"] = Node("""{"type":"Metaspace","replacement":"▁","prepend_scheme":"never","split":true}""");
            return j;
        },
        ["Metaspace: another replacement character"] = () =>
        {
            var j = UnigramFixture.ModernPipeline();
            j["pre_tokenizer"] = Node("""{"type":"Metaspace","replacement":"_","prepend_scheme":"always","split":true}""");
            j["decoder"] = Node("""{"type":"Metaspace","replacement":"_","prepend_scheme":"always","split":true}""");
            return j;
        },
        ["model: byte fallback, decoder: Llama's"] = () =>
        {
            var j = WithBytePieces(UnigramFixture.ModernPipeline());
            j["decoder"] = Node("""
                {"type":"Sequence","decoders":[{"type":"Replace","pattern":{"String":"▁"},"content":" "},{"type":"ByteFallback"},
                {"type":"Fuse"},{"type":"Strip","content":" ","start":1,"stop":0}]}
                """);
            return j;
        },
        ["model: unk id 0, pieces in another order"] = () =>
        {
            // <unk> moved to the front: ids shift, the unk id follows it.
            var j = UnigramFixture.ModernPipeline();
            var vocab = j["model"]!["vocab"]!.AsArray();
            var unk = vocab[2]!;
            vocab.RemoveAt(2);
            vocab.Insert(0, unk);
            j["model"]!["unk_id"] = 0;
            j["added_tokens"] = new JsonArray();
            j["post_processor"] = null;
            return j;
        },
        ["model: no unk id (unknown characters fail the encode)"] = () =>
        {
            var j = UnigramFixture.ModernPipeline();
            j["model"]!["unk_id"] = null;
            return j;
        },
        ["model: duplicate pieces"] = () =>
        {
            // "▁the" and "s" listed again at the end with other scores: they encode to the later id and its score.
            var j = UnigramFixture.ModernPipeline();
            var vocab = j["model"]!["vocab"]!.AsArray();
            vocab.Add(new JsonArray("▁the", -30.0));
            vocab.Add(new JsonArray("s", -0.5));
            return j;
        },
        ["no normalizer"] = () =>
        {
            var j = UnigramFixture.ModernPipeline();
            j["normalizer"] = null;
            return j;
        },
        ["normalizers: Strip, Precompiled, Lowercase, Prepend"] = () =>
        {
            var j = UnigramFixture.Json();
            j["normalizer"] = Node($$"""
                {"type":"Sequence","normalizers":[{"type":"Strip","strip_left":true,"strip_right":true},
                {"type":"Precompiled","precompiled_charsmap":"{{UnigramFixture.Charsmap()}}"},{"type":"Lowercase"},{"type":"Prepend","prepend":"▁"}]}
                """);
            j["pre_tokenizer"] = null;
            return j;
        },
        ["normalizers: NFKC, Replace string"] = () =>
        {
            var j = UnigramFixture.ModernPipeline();
            j["normalizer"] = Node("""{"type":"Sequence","normalizers":[{"type":"NFKC"},{"type":"Replace","pattern":{"String":"  "},"content":" "}]}""");
            return j;
        },
        ["pre-tokenizer: Whitespace, Metaspace always"] = () =>
        {
            var j = UnigramFixture.ModernPipeline();
            j["pre_tokenizer"] = Node("""{"type":"Sequence","pretokenizers":[{"type":"Whitespace"},{"type":"Metaspace","replacement":"▁","prepend_scheme":"always","split":true}]}""");
            return j;
        },
        ["no post-processor, no decoder"] = () =>
        {
            var j = UnigramFixture.ModernPipeline();
            j["post_processor"] = null;
            j["decoder"] = null;
            return j;
        },
    };

    internal static void AssertParity(string what, Tokenizer ours, Tokenizers.DotNet.Tokenizer reference, IEnumerable<string> texts)
    {
        var failures = new List<string>();
        int count = 0;
        foreach (var text in texts)
        {
            count++;
            int[] expected;
            try
            {
                expected = [.. reference.Encode(text).Select(i => (int)i)];
            }
            catch (Tokenizers.DotNet.TokenizerException e)
            {
                // HF refuses the text (a Unigram model without unk id meeting an unknown character): so must we.
                var error = Record.Exception(() => ours.Encode(text, addSpecialTokens: true));
                if (error is not InvalidOperationException)
                    failures.Add($"encode {ParityTests.Escape(text)}\n  expected an error ({e.Message})\n  actual   {(error is null ? "ids" : error.GetType().Name)}");
                continue;
            }
            var actual = ours.Encode(text, addSpecialTokens: true);
            if (!expected.SequenceEqual(actual))
            {
                failures.Add($"encode {ParityTests.Escape(text)}\n  expected [{string.Join(",", expected)}]\n  actual   [{string.Join(",", actual)}]");
                continue;
            }
            var expectedText = reference.Decode([.. expected.Select(i => (uint)i)]);
            var actualText = ours.Decode(actual, skipSpecialTokens: true);
            if (expectedText != actualText)
                failures.Add($"decode {ParityTests.Escape(text)}\n  expected {ParityTests.Escape(expectedText)}\n  actual   {ParityTests.Escape(actualText)}");
        }
        Assert.True(failures.Count == 0, $"{failures.Count} of {count} texts differ ({what}):\n" + string.Join("\n", failures.Take(8)));
    }
}
