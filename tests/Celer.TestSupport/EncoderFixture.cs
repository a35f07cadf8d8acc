using System.Text.Json;

namespace Celer.TestSupport;

/// <summary>
/// An encoder or classifier fixture (tests/fixtures/encoders/NAME, written by tools/reference/make_encoder_fixtures.py on
/// the GPU machine): a tiny random BERT, XLM-RoBERTa or decoder classifier in the Hub's layout with its tokenizer files,
/// and what sentence-transformers (<c>SentenceTransformer</c>, <c>CrossEncoder</c>) and transformers made of each case.
/// </summary>
public sealed class EncoderFixture
{
    private EncoderFixture(string name, JsonElement root)
    {
        Name = name;
        Pooling = root.TryGetProperty("pooling", out JsonElement p) ? p.GetString() : null;
        Normalize = root.TryGetProperty("normalize", out JsonElement n) && n.GetBoolean();
        MaxSeqLength = root.TryGetProperty("max_seq_length", out JsonElement m) ? m.GetInt32() : null;
        Cases = Read(root, "cases", c => new Input(
            Ints(c, "prompt_token_ids")!, c.TryGetProperty("text", out JsonElement t) ? t.GetString() : null,
            Floats(c, "embedding"), Floats(c, "logits"), Floats(c, "probs")));
        TextCases = Read(root, "text_cases", c => new Input(Ints(c, "prompt_token_ids")!, c.GetProperty("text").GetString(), Floats(c, "embedding"), null, null));
        Pairs = Read(root, "pairs", c => new Pair(
            c.GetProperty("query").GetString()!, c.GetProperty("document").GetString()!, Ints(c, "prompt_token_ids")!,
            c.GetProperty("token_type_ids").ValueKind == JsonValueKind.Array ? Ints(c, "token_type_ids") : null,
            c.GetProperty("logit").GetSingle(), c.GetProperty("score").GetSingle()));
        Labels = root.TryGetProperty("id2label", out JsonElement labels)
            ? [.. labels.EnumerateObject().OrderBy(l => int.Parse(l.Name, System.Globalization.CultureInfo.InvariantCulture)).Select(l => l.Value.GetString()!)]
            : [];
    }

    /// <param name="Text">The text the ids came from (null: the case is token ids only).</param>
    public sealed record Input(int[] PromptTokenIds, string? Text, float[]? Embedding, float[]? Logits, float[]? Probs);

    /// <param name="TokenTypeIds">The tokenizer's token type ids (null: it gives none, as XLM-R's).</param>
    /// <param name="Score">CrossEncoder.predict: the logit through the model's activation.</param>
    public sealed record Pair(string Query, string Document, int[] PromptTokenIds, int[]? TokenTypeIds, float Logit, float Score);

    public static string Root => Path.Combine(RepoPaths.Fixtures, "encoders");

    public string Name { get; }

    public string Directory => Path.Combine(Root, Name);

    /// <summary>sentence-transformers' pooling mode (cls, mean, lasttoken); null for classifiers.</summary>
    public string? Pooling { get; }

    public bool Normalize { get; }

    public int? MaxSeqLength { get; }

    /// <summary>Token-id cases (embeddings, or a classifier's logits and probabilities).</summary>
    public IReadOnlyList<Input> Cases { get; }

    /// <summary>An embedder's texts through SentenceTransformer.encode, tokenization included.</summary>
    public IReadOnlyList<Input> TextCases { get; }

    /// <summary>A cross-encoder's (query, document) pairs.</summary>
    public IReadOnlyList<Pair> Pairs { get; }

    /// <summary>A classifier's label names by id.</summary>
    public IReadOnlyList<string> Labels { get; }

    public static EncoderFixture Load(string name)
    {
        using JsonDocument doc = JsonDocument.Parse(File.ReadAllText(Path.Combine(Root, name, "reference.json")));
        return new EncoderFixture(name, doc.RootElement.Clone());
    }

    /// <summary>A classifier's probabilities from transformers' logits (what /classify returns for several labels), in double.</summary>
    public static float[] Softmax(float[] logits)
    {
        double max = logits.Max(), sum = logits.Sum(x => Math.Exp(x - max));
        return [.. logits.Select(x => (float)(Math.Exp(x - max) / sum))];
    }

    private static List<T> Read<T>(JsonElement root, string name, Func<JsonElement, T> read) =>
        root.TryGetProperty(name, out JsonElement list) ? [.. list.EnumerateArray().Select(read)] : [];

    private static int[]? Ints(JsonElement c, string name) =>
        c.TryGetProperty(name, out JsonElement v) ? [.. v.EnumerateArray().Select(e => e.GetInt32())] : null;

    private static float[]? Floats(JsonElement c, string name) =>
        c.TryGetProperty(name, out JsonElement v) ? [.. v.EnumerateArray().Select(e => e.GetSingle())] : null;
}
