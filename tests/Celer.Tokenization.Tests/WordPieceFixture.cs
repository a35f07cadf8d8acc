using System.Text.Json.Nodes;
using Celer.TestSupport;

namespace Celer.Tokenization.Tests;

/// <summary>
/// The real BERT-family tokenizer.json committed under tests/fixtures/tokenizers-wordpiece/ (all-MiniLM-L6-v2: the
/// bert-base-uncased vocabulary and pipeline, with non-null truncation and padding), and HF tokenizers itself
/// (Rust, 0.22 through Tokenizers.DotNet) on that file or on variants of it.
/// </summary>
internal static class WordPieceFixture
{
    public const string Name = "all-minilm-l6-v2";

    public static string Directory => Path.Combine(RepoPaths.Fixtures, "tokenizers-wordpiece");

    public static string TokenizerJsonPath => Path.Combine(Directory, Name, "tokenizer.json");

    public static string CasesPath => Path.Combine(Directory, "cases.json");

    private static readonly Lazy<Tokenizer> Committed = new(() => Tokenizer.FromFile(TokenizerJsonPath));

    private static readonly Lazy<Tokenizers.DotNet.Tokenizer> PlainReference = new(() => Reference(Json()));

    /// <summary>Ours on the file as committed.</summary>
    public static Tokenizer Load() => Committed.Value;

    /// <summary>HF on the file with its truncation and padding off, which is how Celer runs it (see Tokenizer's remarks).</summary>
    public static Tokenizers.DotNet.Tokenizer Reference() => PlainReference.Value;

    /// <summary>The file's JSON, a fresh copy to change into a variant.</summary>
    public static JsonObject Json() => JsonNode.Parse(File.ReadAllText(TokenizerJsonPath))!.AsObject();

    /// <summary>HF tokenizers on <paramref name="json"/>; truncation and padding are switched off unless <paramref name="keepTruncationAndPadding"/>.</summary>
    public static Tokenizers.DotNet.Tokenizer Reference(JsonObject json, bool keepTruncationAndPadding = false)
    {
        if (!keepTruncationAndPadding)
        {
            json["truncation"] = null;
            json["padding"] = null;
        }
        // Tokenizers.DotNet reads a path; the file is read whole when the tokenizer is made.
        string path = Path.Combine(Path.GetTempPath(), $"celer-wordpiece-{Guid.NewGuid():N}.json");
        File.WriteAllText(path, json.ToJsonString());
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
}
