using Celer.Tokenization;

namespace Celer.Server.Reasoning;

/// <summary>
/// vLLM's <c>BaseThinkingReasoningParser</c>: reasoning between a start and an end marker that are single tokens of the
/// model's vocabulary. vLLM refuses such a parser for a tokenizer without both tokens, and so does this one (at
/// startup): a model without them does not write its thinking in that format, and <see cref="IsReasoningEnd"/> needs
/// their ids.
/// </summary>
public abstract class ThinkingReasoningParser : IReasoningParser
{
    protected ThinkingReasoningParser(string name, Tokenizer tokenizer, string startToken = "<think>", string endToken = "</think>")
    {
        Name = name;
        StartToken = startToken;
        EndToken = endToken;
        StartTokenId = FindToken(tokenizer, startToken);
        EndTokenId = FindToken(tokenizer, endToken);
        EndTokenIds = [EndTokenId];
    }

    public string Name { get; }
    public string StartToken { get; }
    public string EndToken { get; }

    /// <summary>The start marker's token id in the served model's vocabulary.</summary>
    public int StartTokenId { get; }

    /// <summary>The end marker's token id in the served model's vocabulary.</summary>
    public int EndTokenId { get; }

    public IReadOnlyList<int> EndTokenIds { get; }

    /// <summary><c>&lt;think&gt;</c> and <c>&lt;/think&gt;</c> are ordinary added tokens, kept by every detokenizer.</summary>
    public bool KeepsSpecialTokens => false;

    /// <summary>Looking back from the last token for the nearest marker: an end marker means over; a start marker or none, not.</summary>
    public bool IsReasoningEnd(ReadOnlySpan<int> tokenIds)
    {
        for (int i = tokenIds.Length - 1; i >= 0; i--)
        {
            if (tokenIds[i] == StartTokenId)
                return false;
            if (tokenIds[i] == EndTokenId)
                return true;
        }
        return false;
    }

    public ReasoningSplit Extract(string modelOutput) => ReasoningSplit.Of(CreateStream(), modelOutput);

    public abstract IReasoningStream CreateStream();

    private int FindToken(Tokenizer tokenizer, string token) => tokenizer.TokenToId(token) ?? throw new ArgumentException(
        $"--reasoning-parser {Name}: the model's tokenizer has no '{token}' token. The parser needs '{StartToken}' and '{EndToken}' as " +
        "single tokens of the vocabulary (vLLM refuses it likewise): this model does not write its reasoning in that format.");
}
