using System.Text.Json;
using System.Text.Json.Nodes;
using Celer.Models.Config;

namespace Celer.Engine;

/// <summary>
/// How a pooling model turns hidden states into its output (vLLM's <c>PoolerConfig</c>): the pooling type, whether the
/// vector is L2-normalized by default, and the Matryoshka cuts it may be shortened to. Read from the checkpoint's
/// sentence-transformers files (<see cref="SentenceTransformersLayout"/>), else vLLM's defaults for a decoder turned
/// into an embedder (last token, normalized), and overridden by <c>--pooler-config</c>.
/// </summary>
/// <param name="HiddenSize">The pooled vector's length before any cut.</param>
/// <param name="MatryoshkaDimensions">
/// Null: the model was not trained for shorter vectors, so a request's <c>dimensions</c> is refused (as vLLM does);
/// empty: any length up to <paramref name="HiddenSize"/>; else the lengths it was trained for.
/// </param>
public sealed record PoolerConfig(PoolingType Type, bool Normalize, int HiddenSize, IReadOnlyList<int>? MatryoshkaDimensions = null)
{
    /// <summary>A sequence classifier's head (classify and score requests); null for an embedding model.</summary>
    public ClassifierConfig? Classifier { get; init; }

    /// <summary>
    /// An encoder's bidirectional attention: every sequence must be whole in its step (no chunked prefill) and nothing is
    /// shared through the prefix cache (a token's keys depend on the tokens after it).
    /// </summary>
    public bool WholeSequences { get; init; }

    /// <summary>How many token types (segments) the model embeds: BERT's 2; 0 or 1 take no pair segments.</summary>
    public int TokenTypes { get; init; }

    /// <summary>sentence-transformers' Dense projections of the pooled vector, before it is cut and normalized.</summary>
    public IReadOnlyList<DenseModule> Dense { get; init; } = [];

    /// <summary>
    /// sentence-transformers' default prompt, which the server puts before each text input of an embedding request (and
    /// before each pair's first text on a cross-encoder), as <c>SentenceTransformer.encode</c> does; null when none.
    /// </summary>
    public SentenceTransformersPrompt? DefaultPrompt { get; init; }

    /// <summary>The length of an embedding before any cut: the last Dense module's output, else <see cref="HiddenSize"/>.</summary>
    public int EmbeddingSize => Dense.Count > 0 ? Dense[^1].OutFeatures : HiddenSize;

    private const string Flag = "--pooler-config";

    /// <summary>
    /// Applies <c>--pooler-config</c>'s JSON (vLLM's fields <c>pooling_type</c>: LAST, MEAN, CLS or MAX, and
    /// <c>normalize</c>) over this config; a field Celer does not read is refused by name.
    /// </summary>
    public PoolerConfig WithOverrides(string? json)
    {
        if (string.IsNullOrWhiteSpace(json))
        {
            return this;
        }

        JsonObject root;
        try
        {
            root = JsonNode.Parse(json) as JsonObject ?? throw new ArgumentException($"{Flag} must be a JSON object, e.g. '{{\"pooling_type\": \"MEAN\"}}'.", nameof(json));
        }
        catch (JsonException e)
        {
            throw new ArgumentException($"{Flag} is not valid JSON: {e.Message}", nameof(json), e);
        }

        PoolerConfig result = this;
        foreach ((string name, JsonNode? value) in root)
        {
            result = name switch
            {
                "pooling_type" when value?.GetValueKind() == JsonValueKind.String => result with { Type = ParseType(value.GetValue<string>()) },
                "normalize" when value?.GetValueKind() is JsonValueKind.True or JsonValueKind.False => result with { Normalize = value.GetValue<bool>() },
                "pooling_type" or "normalize" => throw new ArgumentException($"{Flag}: '{name}' must be a {(name == "normalize" ? "boolean" : "string")}.", nameof(json)),
                _ => throw new ArgumentException($"{Flag}: field '{name}' is not supported (Celer reads pooling_type and normalize).", nameof(json)),
            };
        }

        return result;
    }

    /// <summary>vLLM's pooling type names (any case).</summary>
    public static PoolingType ParseType(string name) => name.ToUpperInvariant() switch
    {
        "LAST" => PoolingType.Last,
        "MEAN" => PoolingType.Mean,
        "CLS" => PoolingType.Cls,
        "MAX" => PoolingType.Max,
        _ => throw new ArgumentException($"{Flag}: pooling_type '{name}' is not supported; use LAST, MEAN, CLS or MAX.", nameof(name)),
    };
}
