using System.Text.Json;

namespace Celer.TestSupport;

/// <summary>
/// A pooling fixture (tests/fixtures/pooling/NAME, written by tools/reference/make_pooling_fixtures.py on the GPU
/// machine): a tiny random embedder in a sentence-transformers layout and what sentence-transformers made of each case.
/// </summary>
/// <param name="Pooling">sentence-transformers' mode: lasttoken, mean or cls.</param>
public sealed record PoolingFixture(string Name, string Pooling, bool Normalize, IReadOnlyList<PoolingFixture.Input> Cases)
{
    /// <param name="EmbeddingFirst32">The vector cut to its first 32 values, then normalized when the model normalizes (vLLM's Matryoshka rule).</param>
    /// <param name="ExcludedPromptTokens">
    /// The leading tokens the pooling left out (sentence-transformers' prompt_length, for a fixture whose Pooling module
    /// has include_prompt false and whose inputs carry its default prompt); 0 for the others.
    /// </param>
    public sealed record Input(int[] PromptTokenIds, float[] Embedding, float[] EmbeddingFirst32, int ExcludedPromptTokens = 0);

    public static string Root => Path.Combine(RepoPaths.Fixtures, "pooling");

    public string Directory => Path.Combine(Root, Name);

    public static IEnumerable<string> Names() => System.IO.Directory.GetDirectories(Root).Select(d => Path.GetFileName(d)!).Order(StringComparer.Ordinal);

    public static PoolingFixture Load(string name)
    {
        using JsonDocument doc = JsonDocument.Parse(File.ReadAllText(Path.Combine(Root, name, "reference.json")));
        JsonElement root = doc.RootElement;
        List<Input> cases = [.. root.GetProperty("cases").EnumerateArray().Select(c => new Input(
            [.. c.GetProperty("prompt_token_ids").EnumerateArray().Select(e => e.GetInt32())],
            [.. c.GetProperty("embedding").EnumerateArray().Select(e => e.GetSingle())],
            [.. c.GetProperty("embedding_first_32").EnumerateArray().Select(e => e.GetSingle())],
            c.TryGetProperty("excluded_prompt_tokens", out JsonElement excluded) ? excluded.GetInt32() : 0))];
        return new PoolingFixture(name, root.GetProperty("pooling").GetString()!, root.GetProperty("normalize").GetBoolean(), cases);
    }

    public static double Cosine(float[] a, float[] b)
    {
        if (a.Length != b.Length)   // a prefix of a longer vector must not pass for the vector
        {
            throw new ArgumentException($"Vectors of {a.Length} and {b.Length} values have no cosine.");
        }

        double dot = 0, na = 0, nb = 0;
        for (int i = 0; i < a.Length; i++)
        {
            dot += (double)a[i] * b[i];
            na += (double)a[i] * a[i];
            nb += (double)b[i] * b[i];
        }

        return dot / Math.Sqrt(na * nb);
    }

    public static double Norm(float[] v) => Math.Sqrt(v.Sum(x => (double)x * x));
}
