using Celer.Tokenization;

namespace Celer.Server.Reasoning;

/// <summary>
/// vLLM's <c>qwen3</c> parser, for Qwen3 models that open the thinking themselves: the reasoning is the block between
/// <c>&lt;think&gt;</c> and <c>&lt;/think&gt;</c>, the rest is content, and an output without the markers is all content.
/// That is how <c>chat_template_kwargs: {"enable_thinking": false}</c> works: Qwen3's template then writes an empty
/// <c>&lt;think&gt;\n\n&lt;/think&gt;</c> into the prompt and the model answers without one. A thinking block cut short by
/// max_tokens (a start marker and no end marker) is reasoning, as vLLM streams it (vLLM's non-streamed answer then gave
/// the whole text, markers and all, as content; current vLLM gives reasoning there too).
/// </summary>
public sealed class Qwen3ReasoningParser(Tokenizer tokenizer) : ThinkingReasoningParser(ReasoningParserRegistry.Qwen3, tokenizer)
{
    public override IReasoningStream CreateStream() => new ReasoningStream(StartToken, EndToken, startsInThinking: false);
}
