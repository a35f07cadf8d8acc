using Celer.Tokenization;

namespace Celer.Server.Reasoning;

/// <summary>
/// vLLM's <c>deepseek_r1</c> parser. DeepSeek-R1's chat template opens the thinking in the prompt
/// (<c>&lt;|Assistant|&gt;&lt;think&gt;\n</c>), so the output starts inside it: everything up to <c>&lt;/think&gt;</c> is
/// reasoning and what follows is content; an output without the end marker (cut by max_tokens) is all reasoning. A
/// <c>&lt;think&gt;</c> the model writes itself (older templates) is dropped. QwQ-32B and Qwen3 "Thinking-2507" models,
/// whose templates also open the thinking in the prompt, use this parser too.
/// </summary>
public sealed class DeepSeekR1ReasoningParser(Tokenizer tokenizer) : ThinkingReasoningParser(ReasoningParserRegistry.DeepSeekR1, tokenizer)
{
    public override IReasoningStream CreateStream() => new ReasoningStream(StartToken, EndToken, startsInThinking: true);
}
