using System.Text.Json;

namespace Celer.Engine.Speculative;

/// <summary>
/// vLLM's <c>--speculative-config</c>: a JSON object naming the <c>method</c> that proposes draft tokens and
/// <c>num_speculative_tokens</c>, how many it proposes per step. Celer runs <c>ngram</c> (prompt lookup: the tokens
/// that followed the latest earlier occurrence of the sequence's last n tokens, n from <c>prompt_lookup_max</c> down to
/// <c>prompt_lookup_min</c>); the model-based methods are refused by name. <c>disable_by_batch_size</c>: no drafts for a
/// step that samples at least that many requests (large batches are compute-bound, where verifying drafts costs more
/// than it saves).
/// </summary>
public sealed record SpeculativeConfig(string Method, int NumSpeculativeTokens, int PromptLookupMin, int PromptLookupMax, int? DisableByBatchSize = null)
{
    private const string Flag = "--speculative-config";

    /// <summary>vLLM's methods that need a draft model or head: named in the refusal.</summary>
    private static readonly string[] ModelMethods = ["draft_model", "eagle", "eagle3", "medusa", "mlp_speculator", "deepseek_mtp", "mtp"];

    /// <summary>The fields read here (model: vLLM's older way to name the method, "[ngram]").</summary>
    private static readonly string[] Known =
        ["method", "num_speculative_tokens", "prompt_lookup_min", "prompt_lookup_max", "model", "disable_by_batch_size"];

    /// <summary>Parses the flag's JSON; null for none. Throws <see cref="ArgumentException"/> naming the field.</summary>
    public static SpeculativeConfig? Parse(string? json)
    {
        if (string.IsNullOrWhiteSpace(json))
        {
            return null;
        }

        JsonElement root;
        try
        {
            using JsonDocument doc = JsonDocument.Parse(json);
            root = doc.RootElement.Clone();
        }
        catch (JsonException e)
        {
            throw new ArgumentException($"{Flag} is not valid JSON: {e.Message}", nameof(json), e);
        }

        if (root.ValueKind != JsonValueKind.Object)
        {
            throw new ArgumentException($"{Flag} must be a JSON object, e.g. '{{\"method\": \"ngram\", \"num_speculative_tokens\": 4}}'.", nameof(json));
        }

        foreach (JsonProperty field in root.EnumerateObject())
        {
            if (!Known.Contains(field.Name))
            {
                throw new ArgumentException($"{Flag}: field '{field.Name}' is not supported (ngram takes method, num_speculative_tokens, prompt_lookup_min, prompt_lookup_max, disable_by_batch_size).", nameof(json));
            }
        }

        string? method = String(root, "method");
        if (method is null && String(root, "model") is { } model)
        {
            // vLLM infers the method from a model name ("[ngram]" or a draft model's path).
            method = model == "[ngram]" ? "ngram" : "draft_model";
        }

        method = method == "[ngram]" ? "ngram" : method;
        if (method is null)
        {
            throw new ArgumentException($"{Flag}: 'method' is required (ngram).", nameof(json));
        }

        if (method != "ngram")
        {
            string why = ModelMethods.Contains(method) ? "needs a draft model or head, which Celer does not run yet" : "is not a speculative decoding method vLLM knows";
            throw new ArgumentException($"{Flag}: method '{method}' {why}; use \"ngram\".", nameof(json));
        }

        int k = Int(root, "num_speculative_tokens") ?? throw new ArgumentException($"{Flag}: 'num_speculative_tokens' is required.", nameof(json));
        // vLLM: both absent gives 5 and 5; one given sets the other to it.
        int? min = Int(root, "prompt_lookup_min"), max = Int(root, "prompt_lookup_max");
        (int lo, int hi) = (min, max) switch
        {
            (null, null) => (5, 5),
            (null, { } m) => (m, m),
            ({ } m, null) => (m, m),
            ({ } a, { } b) => (a, b),
        };
        if (k < 1)
        {
            throw new ArgumentException($"{Flag}: 'num_speculative_tokens' must be at least 1, got {k}.", nameof(json));
        }

        if (lo < 1 || hi < 1)
        {
            throw new ArgumentException($"{Flag}: 'prompt_lookup_min' and 'prompt_lookup_max' must be at least 1, got {lo} and {hi}.", nameof(json));
        }

        if (lo > hi)
        {
            throw new ArgumentException($"{Flag}: 'prompt_lookup_min' ({lo}) must not exceed 'prompt_lookup_max' ({hi}).", nameof(json));
        }

        int? disableBySize = Int(root, "disable_by_batch_size");
        if (disableBySize is < 2)
        {
            throw new ArgumentException($"{Flag}: 'disable_by_batch_size' must be at least 2, got {disableBySize}.", nameof(json));
        }

        return new SpeculativeConfig("ngram", k, lo, hi, disableBySize);
    }

    private static string? String(JsonElement root, string name) =>
        !root.TryGetProperty(name, out JsonElement v) || v.ValueKind == JsonValueKind.Null ? null
        : v.ValueKind == JsonValueKind.String ? v.GetString()
        : throw new ArgumentException($"{Flag}: '{name}' must be a string.", nameof(root));

    private static int? Int(JsonElement root, string name) =>
        !root.TryGetProperty(name, out JsonElement v) || v.ValueKind == JsonValueKind.Null ? null
        : v.ValueKind == JsonValueKind.Number && v.TryGetInt32(out int i) ? i
        : throw new ArgumentException($"{Flag}: '{name}' must be an integer.", nameof(root));
}
