using Celer.Server.ToolCalling;
using Celer.Tokenization;

namespace Celer.Server.Reasoning;

/// <summary>
/// vLLM's <c>openai_gptoss</c> parser, for gpt-oss, whose output is a sequence of harmony messages: the thinking is the
/// <c>analysis</c> channel (<c>&lt;|channel|&gt;analysis&lt;|message|&gt;…&lt;|end|&gt;</c>), the answer the <c>final</c>
/// channel (<c>&lt;|start|&gt;assistant&lt;|channel|&gt;final&lt;|message|&gt;…</c>), with <c>commentary</c> preambles
/// and function calls between them (see <see cref="GptOssReasoningStream"/>). The markers are special tokens of the
/// tokenizer, which must have them (the parser is refused otherwise), and the output is decoded with them kept: vLLM
/// reads harmony from the token ids, this parser from the text, which then carries the same markers.
/// </summary>
public sealed class GptOssReasoningParser : IReasoningParser
{
    private readonly int _startOfMessageId;
    private readonly int[] _endTokenIds;

    public GptOssReasoningParser(Tokenizer tokenizer)
    {
        ArgumentNullException.ThrowIfNull(tokenizer);
        foreach (var marker in new[] { HarmonyMarkers.Start, HarmonyMarkers.Channel, HarmonyMarkers.Message, HarmonyMarkers.End })
        {
            if (tokenizer.TokenToId(marker) is null)
                throw new ArgumentException($"--reasoning-parser {Name}: the model's tokenizer has no '{marker}' token: this model does not write gpt-oss's harmony format.");
        }
        _endTokenIds = tokenizer.Encode(EndToken, addSpecialTokens: false);
        _startOfMessageId = tokenizer.TokenToId(HarmonyMarkers.Start)!.Value;
    }

    public string Name => ReasoningParserRegistry.OpenAIGptOss;

    /// <summary>The header of the first analysis message, as the output begins with it.</summary>
    public string StartToken => HarmonyMarkers.Channel + HarmonyHeader.Analysis + HarmonyMarkers.Message;

    /// <summary>The header of the final answer, the sequence vLLM's <c>is_reasoning_end</c> looks for.</summary>
    public string EndToken => HarmonyMarkers.Start + HarmonyMarkers.Assistant + HarmonyMarkers.Channel + HarmonyHeader.Final + HarmonyMarkers.Message;

    /// <summary>
    /// <see cref="EndToken"/> as token ids: the markers are single tokens, the role and the channel name one more each.
    /// Its last token, <c>&lt;|message|&gt;</c>, also ends every other header, so only the whole sequence ends the thinking.
    /// </summary>
    public IReadOnlyList<int> EndTokenIds => _endTokenIds;

    /// <summary>harmony's markers are special tokens, which a detokenizer that skips them leaves out.</summary>
    public bool KeepsSpecialTokens => true;

    /// <summary>
    /// Whether the thinking is over at the end of <paramref name="tokenIds"/>: the message the last <c>&lt;|start|&gt;</c>
    /// opened has the final answer's header, complete. vLLM looks for that header anywhere, which a multi-turn prompt
    /// (earlier answers rendered with theirs) would match; only the message being written counts here. A prompt ending
    /// with the template's <c>&lt;|start|&gt;assistant</c> is not over.
    /// </summary>
    public bool IsReasoningEnd(ReadOnlySpan<int> tokenIds)
    {
        int start = tokenIds.LastIndexOf(_startOfMessageId);
        if (start < 0)
            return false;
        return tokenIds[start..].StartsWith(_endTokenIds);
    }

    /// <summary>vLLM's <c>parse_chat_output</c>: the whole output split into reasoning and content (null when empty).</summary>
    public ReasoningSplit Extract(string modelOutput) => ReasoningSplit.Of(CreateStream(), modelOutput);

    public IReasoningStream CreateStream() => new GptOssReasoningStream();
}
