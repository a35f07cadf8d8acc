using System.Globalization;
using System.Text;
using Celer.Engine;
using Celer.Server.Protocol;
using Celer.Tokenization;

namespace Celer.Server.Serving;

/// <summary>
/// Renders engine logprobs in the two OpenAI formats, with vLLM's conventions: each token is shown
/// as its own decode (special tokens kept), or as <c>token_id:N</c> under
/// <c>return_tokens_as_token_ids</c>; logprobs are floored at −9999 (−inf has no JSON spelling).
/// </summary>
internal sealed class LogprobsFormatter(Tokenizer tokenizer, bool tokensAsIds)
{
    private const float MinLogprob = -9999f;

    public string TokenText(int tokenId) =>
        tokensAsIds ? "token_id:" + tokenId.ToString(CultureInfo.InvariantCulture) : tokenizer.Decode([tokenId], skipSpecialTokens: false);

    private static float Floor(float logprob) => float.IsNaN(logprob) ? MinLogprob : Math.Max(logprob, MinLogprob);

    /// <summary>
    /// Legacy completions logprobs for <paramref name="positions"/>: the chosen token's logprob and a
    /// map of the chosen plus the top-k tokens (vLLM's dict, so it holds k or k + 1 entries). A null
    /// position (the first prompt token under echo) has neither. <c>text_offset</c> counts characters
    /// from <paramref name="initialTextOffset"/>.
    /// </summary>
    public void AppendCompletionLogprobs(CompletionLogprobs target, IReadOnlyList<int> tokenIds, IReadOnlyList<PositionLogprobs?> positions, int initialTextOffset)
    {
        var offset = target.TextOffset.Count == 0
            ? initialTextOffset
            : target.TextOffset[^1] + CodePoints(target.Tokens[^1]);
        for (var i = 0; i < tokenIds.Count; i++)
        {
            var token = TokenText(tokenIds[i]);
            target.TextOffset.Add(offset);
            target.Tokens.Add(token);
            offset += CodePoints(token);
            if (i >= positions.Count || positions[i] is not { } position)
            {
                target.TokenLogprobs.Add(null);
                target.TopLogprobs.Add(null);
                continue;
            }
            target.TokenLogprobs.Add(Floor(position.Chosen.Logprob));
            var top = new Dictionary<string, float>(position.Top.Count + 1) { [token] = Floor(position.Chosen.Logprob) };
            foreach (var candidate in position.Top)
                top[TokenText(candidate.TokenId)] = Floor(candidate.Logprob);
            target.TopLogprobs.Add(top);
        }
    }

    /// <summary>Chat logprobs: per token its text, logprob, UTF-8 bytes and the top-k alternatives in rank order.</summary>
    public List<ChatTokenLogprob> ChatLogprobs(IReadOnlyList<int> tokenIds, IReadOnlyList<PositionLogprobs> positions, int topLogprobs)
    {
        var content = new List<ChatTokenLogprob>(tokenIds.Count);
        for (var i = 0; i < tokenIds.Count && i < positions.Count; i++)
        {
            var position = positions[i];
            var token = TokenText(tokenIds[i]);
            var top = new List<ChatTopLogprob>(Math.Min(topLogprobs, position.Top.Count));
            for (var k = 0; k < position.Top.Count && k < topLogprobs; k++)
            {
                var candidate = TokenText(position.Top[k].TokenId);
                top.Add(new ChatTopLogprob(candidate, Floor(position.Top[k].Logprob), Utf8Bytes(candidate)));
            }
            content.Add(new ChatTokenLogprob(token, Floor(position.Chosen.Logprob), Utf8Bytes(token), top));
        }
        return content;
    }

    /// <summary>vLLM's <c>prompt_logprobs</c>: per prompt position, token id → logprob, rank, decoded token.</summary>
    public List<Dictionary<string, PromptLogprobEntry>?> PromptLogprobs(IReadOnlyList<PositionLogprobs?> positions)
    {
        var result = new List<Dictionary<string, PromptLogprobEntry>?>(positions.Count);
        foreach (var position in positions)
        {
            if (position is null)
            {
                result.Add(null);
                continue;
            }
            var entries = new Dictionary<string, PromptLogprobEntry>(position.Top.Count + 1);
            Add(entries, position.Chosen);
            foreach (var candidate in position.Top)
                Add(entries, candidate);
            result.Add(entries);
        }
        return result;

        void Add(Dictionary<string, PromptLogprobEntry> entries, TokenLogprob logprob) =>
            entries[logprob.TokenId.ToString(CultureInfo.InvariantCulture)] =
                new PromptLogprobEntry(Floor(logprob.Logprob), logprob.Rank, TokenText(logprob.TokenId));
    }

    private static int[] Utf8Bytes(string text)
    {
        var bytes = Encoding.UTF8.GetBytes(text);
        var result = new int[bytes.Length];
        for (var i = 0; i < bytes.Length; i++)
            result[i] = bytes[i];
        return result;
    }

    /// <summary>Python's <c>len</c>: code points, which is what vLLM's text offsets count.</summary>
    internal static int CodePoints(string text)
    {
        var count = 0;
        foreach (var _ in text.EnumerateRunes())
            count++;
        return count;
    }
}
