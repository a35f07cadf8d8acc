using System.Text.Json;

namespace Celer.TestSupport;

/// <summary>One position's logprobs as transformers computed them: the chosen token and the top-5.</summary>
public sealed record ReferenceLogprobs(int TokenId, float Logprob, IReadOnlyList<(int TokenId, float Logprob)> Top);

/// <summary>One prompt of a fixture: transformers' greedy continuation (fp32) with logprobs, and the prompt logprobs.</summary>
public sealed record ReferenceCase(
    IReadOnlyList<int> PromptTokenIds,
    string? PromptText,
    IReadOnlyList<int> OutputTokenIds,
    IReadOnlyList<ReferenceLogprobs> OutputLogprobs,
    IReadOnlyList<ReferenceLogprobs?> PromptLogprobs);

/// <summary>reference.json written by tools/reference/make_model_fixtures.py or tools/train/train_small_model.py.</summary>
public sealed record ReferenceFixture(string Model, IReadOnlyList<ReferenceCase> Cases)
{
    public static ReferenceFixture Load(string path)
    {
        using JsonDocument doc = JsonDocument.Parse(File.ReadAllText(path));
        JsonElement root = doc.RootElement;
        var cases = new List<ReferenceCase>();
        foreach (JsonElement c in root.GetProperty("cases").EnumerateArray())
        {
            cases.Add(new ReferenceCase(
                Ints(c.GetProperty("prompt_token_ids")),
                c.TryGetProperty("prompt_text", out JsonElement text) ? text.GetString() : null,
                Ints(c.GetProperty("output_token_ids")),
                c.GetProperty("output_logprobs").EnumerateArray().Select(Position).ToList(),
                c.GetProperty("prompt_logprobs").EnumerateArray().Select(e => e.ValueKind == JsonValueKind.Null ? null : Position(e)).ToList()));
        }

        return new ReferenceFixture(root.GetProperty("model").GetString()!, cases);
    }

    private static int[] Ints(JsonElement e) => e.EnumerateArray().Select(x => x.GetInt32()).ToArray();

    private static ReferenceLogprobs Position(JsonElement e) => new(
        e.GetProperty("token_id").GetInt32(),
        e.GetProperty("logprob").GetSingle(),
        e.GetProperty("top").EnumerateArray().Select(t => (t.GetProperty("token_id").GetInt32(), t.GetProperty("logprob").GetSingle())).ToList());
}
