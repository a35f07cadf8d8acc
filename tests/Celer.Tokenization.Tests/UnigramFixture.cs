using System.IO.Compression;
using System.Text.Json.Nodes;
using Celer.TestSupport;

namespace Celer.Tokenization.Tests;

/// <summary>
/// The real SentencePiece Unigram tokenizer.json committed under tests/fixtures/tokenizers-unigram/ (t5-small,
/// Brotli-compressed; see its README), and HF tokenizers itself (Rust, 0.22 through Tokenizers.DotNet) on that file or on
/// variants of it.
/// </summary>
internal static class UnigramFixture
{
    public const int Pad = 0, Eos = 1, Unk = 2, Metaspace = 3;

    public static string CompressedPath => Path.Combine(RepoPaths.Fixtures, "tokenizers-unigram", "t5-small", "tokenizer.json.br");

    private static readonly Lazy<string> Text = new(() =>
    {
        using var file = File.OpenRead(CompressedPath);
        using var brotli = new BrotliStream(file, CompressionMode.Decompress);
        using var reader = new StreamReader(brotli);
        return reader.ReadToEnd();
    });

    private static readonly Lazy<Tokenizer> Committed = new(() => Tokenizer.FromJson(Text.Value));

    private static readonly Lazy<Tokenizers.DotNet.Tokenizer> CommittedReference = new(() => Reference(Json()));

    /// <summary>The file's JSON text, decompressed.</summary>
    public static string JsonText => Text.Value;

    /// <summary>Ours on the file as committed.</summary>
    public static Tokenizer Load() => Committed.Value;

    /// <summary>HF on the file as committed (it has no truncation or padding).</summary>
    public static Tokenizers.DotNet.Tokenizer Reference() => CommittedReference.Value;

    /// <summary>The file's JSON, a fresh copy to change into a variant.</summary>
    public static JsonObject Json() => JsonNode.Parse(Text.Value)!.AsObject();

    /// <summary>HF tokenizers on <paramref name="json"/>.</summary>
    public static Tokenizers.DotNet.Tokenizer Reference(JsonObject json) => Reference(json.ToJsonString());

    public static Tokenizers.DotNet.Tokenizer Reference(string json)
    {
        // Tokenizers.DotNet reads a path; the file is read whole when the tokenizer is made.
        string path = Path.Combine(Path.GetTempPath(), $"celer-unigram-{Guid.NewGuid():N}.json");
        File.WriteAllText(path, json);
        try
        {
            return new Tokenizers.DotNet.Tokenizer(vocabPath: path);
        }
        finally
        {
            File.Delete(path);
        }
    }

    /// <summary>Ours on <paramref name="json"/>.</summary>
    public static Tokenizer Ours(JsonObject json) => Tokenizer.FromJson(json.ToJsonString());

    /// <summary>The file's charsmap, for variants that put the Precompiled normalizer elsewhere.</summary>
    public static string Charsmap() => Json()["normalizer"]!["precompiled_charsmap"]!.GetValue<string>();

    /// <summary>
    /// The pipeline HF's current converters write for T5 and XLM-RoBERTa (and so bge-m3, multilingual-e5): Precompiled
    /// then Replace(" {2,}", " "), Metaspace "always" with split as pre-tokenizer and decoder.
    /// </summary>
    public static JsonObject ModernPipeline()
    {
        var json = Json();
        json["normalizer"] = JsonNode.Parse($$"""
            {"type":"Sequence","normalizers":[{"type":"Precompiled","precompiled_charsmap":"{{Charsmap()}}"},
            {"type":"Replace","pattern":{"Regex":" {2,}"},"content":" "}]}
            """);
        json["pre_tokenizer"] = JsonNode.Parse("""{"type":"Metaspace","replacement":"▁","prepend_scheme":"always","split":true}""");
        json["decoder"] = JsonNode.Parse("""{"type":"Metaspace","replacement":"▁","prepend_scheme":"always","split":true}""");
        return json;
    }

    /// <summary>
    /// <see cref="ModernPipeline"/> framed as XLM-RoBERTa is: &lt;s&gt; (a new special token, id 32100) A &lt;/s&gt;, pairs
    /// &lt;s&gt; A &lt;/s&gt;&lt;/s&gt; B &lt;/s&gt;, through the given post-processor JSON (RobertaProcessing or the
    /// TemplateProcessing newer files have).
    /// </summary>
    public static JsonObject XlmRobertaStyle(string postProcessor)
    {
        var json = ModernPipeline();
        json["added_tokens"]!.AsArray().Add(JsonNode.Parse(
            """{"id":32100,"content":"<s>","single_word":false,"lstrip":false,"rstrip":false,"normalized":false,"special":true}"""));
        json["post_processor"] = JsonNode.Parse(postProcessor);
        return json;
    }

    public const int Bos = 32100;

    public const string RobertaProcessing =
        """{"type":"RobertaProcessing","sep":["</s>",1],"cls":["<s>",32100],"trim_offsets":true,"add_prefix_space":true}""";

    public const string XlmRobertaTemplate = """
        {"type":"TemplateProcessing",
         "single":[{"SpecialToken":{"id":"<s>","type_id":0}},{"Sequence":{"id":"A","type_id":0}},{"SpecialToken":{"id":"</s>","type_id":0}}],
         "pair":[{"SpecialToken":{"id":"<s>","type_id":0}},{"Sequence":{"id":"A","type_id":0}},{"SpecialToken":{"id":"</s>","type_id":0}},
                 {"SpecialToken":{"id":"</s>","type_id":0}},{"Sequence":{"id":"B","type_id":0}},{"SpecialToken":{"id":"</s>","type_id":0}}],
         "special_tokens":{"<s>":{"id":"<s>","ids":[32100],"tokens":["<s>"]},"</s>":{"id":"</s>","ids":[1],"tokens":["</s>"]}}}
        """;
}
