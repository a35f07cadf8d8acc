namespace Celer.Engine;

/// <summary>
/// What a pooling request asks of a pooling model (vLLM's <c>PoolingParams</c>): its <see cref="Task"/>, the
/// embedding's <see cref="Dimensions"/> (Matryoshka models only: the first d values, normalized after the cut when the
/// model normalizes) and whether to L2-normalize it (null: the model's default, from its pooler config), and the
/// prompt's token type ids for an encoder that has them (a cross-encoder's pair: 0 for the query, 1 for the document).
/// </summary>
public sealed record PoolingParams
{
    public PoolingTask Task { get; init; } = PoolingTask.Embed;

    public int? Dimensions { get; init; }

    public bool? Normalize { get; init; }

    /// <summary>One per prompt token; null: all 0.</summary>
    public IReadOnlyList<int>? TokenTypeIds { get; init; }

    /// <summary>
    /// vLLM's <c>use_activation</c> for classify and score: false returns the classifier's raw logits instead of its
    /// probabilities (or a cross-encoder's raw logit instead of its score).
    /// </summary>
    public bool UseActivation { get; init; } = true;

    /// <summary>
    /// How many leading tokens mean and max pooling leave out: sentence-transformers' <c>prompt_length</c>, whose
    /// positions its Pooling module masks when <c>include_prompt</c> is false (the server sets it for inputs it put the
    /// model's default prompt before). CLS and last-token pooling read their one row as before.
    /// </summary>
    public int ExcludedPromptTokens
    {
        get;
        init => field = value >= 0 ? value : throw new ArgumentOutOfRangeException(nameof(value), value, "The excluded prompt tokens cannot be negative.");
    }
}

/// <summary>vLLM's pooling tasks: what a pooling request's output is.</summary>
public enum PoolingTask
{
    /// <summary>The pooled hidden state (an embedding), cut and normalized as asked.</summary>
    Embed,

    /// <summary>A classifier's label probabilities (softmax, or the sigmoid of a one-label model's logit).</summary>
    Classify,

    /// <summary>A cross-encoder's relevance score of its pair: its one logit through the model's cross-encoder activation.</summary>
    Score,
}
