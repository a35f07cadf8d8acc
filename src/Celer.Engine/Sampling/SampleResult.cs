namespace Celer.Engine;

/// <summary>One sampled token and, when the request asked for logprobs, its position's logprobs.</summary>
public readonly record struct SampleResult(int TokenId, PositionLogprobs? Logprobs);
