using System.Globalization;
using System.Text.Json;

namespace Celer.Models.Config;

/// <summary>
/// A sequence classifier's head as config.json describes it (<c>…ForSequenceClassification</c>): its labels
/// (<c>id2label</c>, else <c>num_labels</c> named LABEL_i as transformers names them, else 2), transformers'
/// <c>problem_type</c>, and the activation sentence-transformers' CrossEncoder applies to its scores
/// (<c>sentence_transformers.activation_fn</c>, or the older <c>sbert_ce_default_activation_function</c>), null when the
/// config names none.
/// <para>
/// vLLM's "LLM as reranker" conversion of a causal LM (Qwen3-Reranker, mxbai-rerank-v2): with <c>method</c> (or
/// <c>is_original_qwen3_reranker</c>, which means <c>from_2_way_softmax</c>) and <c>classifier_from_token</c>, the head
/// is made at load from the LM head's rows of those tokens instead of read from <c>score.weight</c>:
/// <c>from_2_way_softmax</c> takes two tokens and scores with one label, row(second) − row(first), so its sigmoid is
/// the softmax of the two tokens' logits; <c>no_post_processing</c> keeps one label per token, the rows as they are.
/// Such a reranker reads a pair as its two texts joined (<see cref="UsePadToken"/> false), not through a pair template.
/// </para>
/// </summary>
public sealed record ClassifierConfig(IReadOnlyList<string> Labels, string? ProblemType, string? CrossEncoderActivation)
{
    private const string Suffix = "ForSequenceClassification";

    /// <summary>vLLM's methods of making a classifier head from LM-head rows.</summary>
    public const string FromTwoWaySoftmax = "from_2_way_softmax", NoPostProcessing = "no_post_processing";

    /// <summary>How the head is made from LM-head rows (<see cref="FromTwoWaySoftmax"/>, <see cref="NoPostProcessing"/>); null: read from the checkpoint.</summary>
    public string? Method { get; init; }

    /// <summary><c>classifier_from_token</c>: the tokens (vocabulary strings) whose LM-head rows make the head.</summary>
    public IReadOnlyList<string>? FromTokens { get; init; }

    /// <summary>The ids of <see cref="FromTokens"/> in the model's tokenizer, resolved by the loader (which has the tokenizer).</summary>
    public IReadOnlyList<int>? FromTokenIds { get; init; }

    /// <summary>
    /// vLLM's <c>use_pad_token</c>: a cross-encoder's pair goes through the tokenizer's pair template (true, the default),
    /// or an LLM reranker's two texts are joined and tokenized as one (false, the default when <see cref="Method"/> is set).
    /// </summary>
    public bool UsePadToken { get; init; } = true;

    public int NumLabels => Labels.Count;

    public static bool IsClassifier(string architecture) => architecture.EndsWith(Suffix, StringComparison.Ordinal);

    /// <summary>The architecture whose layers a decoder classifier runs: <c>Qwen3ForSequenceClassification</c> → <c>Qwen3ForCausalLM</c>.</summary>
    public static string CausalLmOf(string architecture) => architecture[..^Suffix.Length] + "ForCausalLM";

    internal static ClassifierConfig? Parse(JsonElement root, string architecture)
    {
        const string F = ModelConfig.FileName;
        if (!IsClassifier(architecture))
        {
            return null;
        }

        string? problem = JsonFields.OptionalString(root, "problem_type", F);
        if (problem is not (null or "regression" or "single_label_classification" or "multi_label_classification"))
        {
            throw new ModelConfigException($"{F}: field 'problem_type' value '{problem}' is not one of regression, single_label_classification, multi_label_classification");
        }

        string? activation = null;
        if (JsonFields.TryGet(root, "sentence_transformers", out JsonElement st) && st.ValueKind == JsonValueKind.Object)
        {
            activation = JsonFields.OptionalString(st, "activation_fn", F);
        }

        activation ??= JsonFields.OptionalString(root, "sbert_ce_default_activation_function", F);
        string[] labels = ParseLabels(root);
        string? method = JsonFields.OptionalString(root, "method", F)
            ?? (JsonFields.OptionalBool(root, "is_original_qwen3_reranker", F) == true ? FromTwoWaySoftmax : null);
        if (method is null)
        {
            return new ClassifierConfig(labels, problem, activation) { UsePadToken = JsonFields.OptionalBool(root, "use_pad_token", F) ?? true };
        }

        string[] tokens = JsonFields.TryGet(root, "classifier_from_token", out JsonElement list) && list.ValueKind == JsonValueKind.Array
            && list.EnumerateArray().All(t => t.ValueKind == JsonValueKind.String)
            ? [.. list.EnumerateArray().Select(t => t.GetString()!)]
            : throw new ModelConfigException($"{F}: method '{method}' makes the classifier from LM-head rows: 'classifier_from_token' must list their tokens");
        int count = method switch
        {
            FromTwoWaySoftmax when tokens.Length == 2 => 1,
            FromTwoWaySoftmax => throw new ModelConfigException($"{F}: method '{FromTwoWaySoftmax}' takes two tokens in 'classifier_from_token', got {tokens.Length}"),
            NoPostProcessing when tokens.Length > 0 => tokens.Length,
            NoPostProcessing => throw new ModelConfigException($"{F}: 'classifier_from_token' is empty"),
            _ => throw new ModelConfigException($"{F}: field 'method' value '{method}' is not supported ({FromTwoWaySoftmax}, {NoPostProcessing})"),
        };
        // The converted head has its own labels: the config's id2label described the causal LM, if anything.
        string[] converted = labels.Length == count ? labels : [.. Enumerable.Range(0, count).Select(i => $"LABEL_{i}")];
        return new ClassifierConfig(converted, problem, activation)
        {
            Method = method, FromTokens = tokens, UsePadToken = JsonFields.OptionalBool(root, "use_pad_token", F) ?? false,
        };
    }

    private static string[] ParseLabels(JsonElement root)
    {
        const string F = ModelConfig.FileName;
        if (JsonFields.TryGet(root, "id2label", out JsonElement map) && map.ValueKind == JsonValueKind.Object)
        {
            var byId = new SortedDictionary<int, string>();
            foreach (JsonProperty p in map.EnumerateObject())
            {
                if (!int.TryParse(p.Name, NumberStyles.None, CultureInfo.InvariantCulture, out int id) || p.Value.ValueKind != JsonValueKind.String)
                {
                    throw new ModelConfigException($"{F}: field 'id2label' must map label ids (\"0\", \"1\", …) to names");
                }

                byId[id] = p.Value.GetString()!;
            }

            if (byId.Count == 0 || byId.Keys.Last() != byId.Count - 1)
            {
                throw new ModelConfigException($"{F}: field 'id2label' must name the labels 0..n−1, got ids {string.Join(", ", byId.Keys)}");
            }

            return [.. byId.Values];
        }

        int count = JsonFields.OptionalInt(root, "num_labels", F) ?? 2;
        if (count < 1)
        {
            throw new ModelConfigException($"{F}: field 'num_labels' must be positive, got {count}");
        }

        return [.. Enumerable.Range(0, count).Select(i => $"LABEL_{i}")];
    }
}
