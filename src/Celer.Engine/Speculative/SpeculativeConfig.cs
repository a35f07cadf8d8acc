using System.Text.Json;

namespace Celer.Engine.Speculative;

/// <summary>
/// vLLM's <c>--speculative-config</c>: a JSON object naming the <c>method</c> that proposes draft tokens and
/// <c>num_speculative_tokens</c>, how many it proposes per step. Celer runs <c>ngram</c> (prompt lookup: the tokens
/// that followed the latest earlier occurrence of the sequence's last n tokens, n from <c>prompt_lookup_max</c> down to
/// <c>prompt_lookup_min</c>) and <c>draft_model</c> (<c>model</c>: the directory of a smaller model with the target's
/// vocabulary, run greedily on the same device), <c>eagle</c> and <c>eagle3</c> (<c>model</c>: the directory of an EAGLE or
/// EAGLE-3 head, fed the target's hidden states); the other head-based methods (Medusa, MTP, …) are refused by name.
/// <c>disable_by_batch_size</c>: no drafts for a step that samples at least that many requests (large batches are
/// compute-bound, where verifying drafts costs more than it saves).
/// </summary>
public sealed record SpeculativeConfig(
    string Method, int NumSpeculativeTokens, int PromptLookupMin, int PromptLookupMax, int? DisableByBatchSize = null, string? Model = null)
{
    private const string Flag = "--speculative-config";

    public const string Ngram = "ngram";
    public const string DraftModel = "draft_model";
    public const string Eagle = "eagle";
    public const string Eagle3 = "eagle3";

    /// <summary>vLLM's other methods that need a trained head on the target's hidden states: named in the refusal.</summary>
    private static readonly string[] HeadMethods = ["medusa", "mlp_speculator", "deepseek_mtp", "mtp"];

    /// <summary>The fields read here (model: the draft model, or "[ngram]", vLLM's older way to name the method).</summary>
    private static readonly string[] Known =
        ["method", "num_speculative_tokens", "prompt_lookup_min", "prompt_lookup_max", "model", "disable_by_batch_size", "draft_tensor_parallel_size"];

    /// <summary>
    /// Slots the scheduler allocates past a request's scheduled tokens (vLLM's <c>num_lookahead_tokens</c>): a draft
    /// model or head writes its own drafts' KV at the positions after the request's last token before the target sees them.
    /// </summary>
    public int NumLookaheadTokens => UsesModel ? NumSpeculativeTokens : 0;

    /// <summary>Whether the drafts come from a model of their own (a draft model or an EAGLE head, in <see cref="Model"/>).</summary>
    public bool UsesModel => Method is DraftModel or Eagle or Eagle3;

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
                throw new ArgumentException(
                    $"{Flag}: field '{field.Name}' is not supported (ngram takes method, num_speculative_tokens, prompt_lookup_min, prompt_lookup_max, disable_by_batch_size; " +
                    "draft_model, eagle and eagle3 take method, model, num_speculative_tokens, disable_by_batch_size, draft_tensor_parallel_size).", nameof(json));
            }
        }

        string? method = String(root, "method"), model = String(root, "model");
        if (method is null && model is not null)
        {
            // vLLM infers the method from a model name: "[ngram]", an EAGLE head's ("eagle-", "eagle3" in it), else a draft model's.
            string name = model.ToLowerInvariant();
            method = model == "[ngram]" ? Ngram : name.Contains("eagle-", StringComparison.Ordinal) ? Eagle : name.Contains("eagle3", StringComparison.Ordinal) ? Eagle3 : DraftModel;
        }

        method = method == "[ngram]" ? Ngram : method;
        if (method is null)
        {
            throw new ArgumentException($"{Flag}: 'method' is required (ngram, draft_model, eagle or eagle3).", nameof(json));
        }

        if (method is not (Ngram or DraftModel or Eagle or Eagle3))
        {
            string why = HeadMethods.Contains(method) ? "needs a kind of draft head Celer does not run yet" : "is not a speculative decoding method vLLM knows";
            throw new ArgumentException($"{Flag}: method '{method}' {why}; use \"ngram\", \"draft_model\", \"eagle\" or \"eagle3\".", nameof(json));
        }

        int k = Int(root, "num_speculative_tokens") ?? throw new ArgumentException($"{Flag}: 'num_speculative_tokens' is required.", nameof(json));
        if (k < 1)
        {
            throw new ArgumentException($"{Flag}: 'num_speculative_tokens' must be at least 1, got {k}.", nameof(json));
        }

        int? disableBySize = Int(root, "disable_by_batch_size");
        if (disableBySize is < 2)
        {
            throw new ArgumentException($"{Flag}: 'disable_by_batch_size' must be at least 2, got {disableBySize}.", nameof(json));
        }

        return method == Ngram ? ParseNgram(root, k, disableBySize) : ParseModel(root, method, model, k, disableBySize);
    }

    /// <summary>draft_model, eagle and eagle3: the drafts come from the model (or head) in <c>model</c>.</summary>
    private static SpeculativeConfig ParseModel(JsonElement root, string method, string? model, int k, int? disableBySize)
    {
        if (string.IsNullOrEmpty(model) || model == "[ngram]")
        {
            string what = method == DraftModel ? "the draft model" : method == Eagle ? "the EAGLE head" : "the EAGLE-3 head";
            throw new ArgumentException($"{Flag}: {method} needs 'model', the directory of {what}.", nameof(root));
        }

        foreach (string ngramOnly in (string[])["prompt_lookup_min", "prompt_lookup_max"])
        {
            if (root.TryGetProperty(ngramOnly, out _))
            {
                throw new ArgumentException($"{Flag}: '{ngramOnly}' belongs to the ngram method, not {method}.", nameof(root));
            }
        }

        // The draft runs on the target's device; a draft split over several GPUs comes with tensor parallelism.
        if (Int(root, "draft_tensor_parallel_size") is { } tp and not 1)
        {
            throw new ArgumentException($"{Flag}: 'draft_tensor_parallel_size' must be 1 (the draft runs on the target's one device), got {tp}.", nameof(root));
        }

        return new SpeculativeConfig(method, k, 0, 0, disableBySize, model);
    }

    private static SpeculativeConfig ParseNgram(JsonElement root, int k, int? disableBySize)
    {
        if (root.TryGetProperty("draft_tensor_parallel_size", out _))
        {
            throw new ArgumentException($"{Flag}: 'draft_tensor_parallel_size' belongs to a draft model, not the ngram method.", nameof(root));
        }

        // vLLM: both absent gives 5 and 5; one given sets the other to it.
        int? min = Int(root, "prompt_lookup_min"), max = Int(root, "prompt_lookup_max");
        (int lo, int hi) = (min, max) switch
        {
            (null, null) => (5, 5),
            (null, { } m) => (m, m),
            ({ } m, null) => (m, m),
            ({ } a, { } b) => (a, b),
        };
        if (lo < 1 || hi < 1)
        {
            throw new ArgumentException($"{Flag}: 'prompt_lookup_min' and 'prompt_lookup_max' must be at least 1, got {lo} and {hi}.", nameof(root));
        }

        if (lo > hi)
        {
            throw new ArgumentException($"{Flag}: 'prompt_lookup_min' ({lo}) must not exceed 'prompt_lookup_max' ({hi}).", nameof(root));
        }

        return new SpeculativeConfig(Ngram, k, lo, hi, disableBySize);
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
