using System.Globalization;
using System.Text.Json;

namespace Celer.Models.Config;

/// <summary>
/// A sequence classifier's head as config.json describes it (<c>…ForSequenceClassification</c>): its labels
/// (<c>id2label</c>, else <c>num_labels</c> named LABEL_i as transformers names them, else 2), transformers'
/// <c>problem_type</c>, and the activation sentence-transformers' CrossEncoder applies to its scores
/// (<c>sentence_transformers.activation_fn</c>, or the older <c>sbert_ce_default_activation_function</c>), null when the
/// config names none.
/// </summary>
public sealed record ClassifierConfig(IReadOnlyList<string> Labels, string? ProblemType, string? CrossEncoderActivation)
{
    private const string Suffix = "ForSequenceClassification";

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
        return new ClassifierConfig(ParseLabels(root), problem, activation);
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
