namespace Celer.Engine;

/// <summary>
/// What a pooling request asks of a pooling model (vLLM's <c>PoolingParams</c> for the embed task): the embedding's
/// <see cref="Dimensions"/> (Matryoshka models only: the first d values, normalized after the cut when the model
/// normalizes) and whether to L2-normalize it (null: the model's default, from its pooler config).
/// </summary>
public sealed record PoolingParams
{
    public int? Dimensions { get; init; }

    public bool? Normalize { get; init; }
}
