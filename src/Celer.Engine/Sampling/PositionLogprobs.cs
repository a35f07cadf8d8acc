namespace Celer.Engine;

/// <summary>
/// Log probability of one token at one position. <paramref name="Rank"/> is vLLM's rank:
/// 1 + the number of tokens whose logprob is strictly greater (1 = most likely; ties share a rank).
/// </summary>
public sealed record TokenLogprob(int TokenId, float Logprob, int Rank);

/// <summary>
/// The logprobs of one generated (or prompt) position: the chosen token's, and the top-k tokens'
/// in descending order of logprob (ties broken by lower token id). As in vLLM, both are computed
/// from the raw logits, before penalties, temperature and top-k/top-p.
/// </summary>
public sealed record PositionLogprobs(TokenLogprob Chosen, IReadOnlyList<TokenLogprob> Top);
