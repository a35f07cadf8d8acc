namespace Celer.Server.Reasoning;

/// <summary>
/// A reasoning parser, vLLM's <c>ReasoningParser</c> (<c>--reasoning-parser</c>): the model writes its thinking between a
/// start and an end marker, and the chat endpoint returns that text as <c>reasoning_content</c> (and <c>reasoning</c>)
/// apart from the answer in <c>content</c>. One instance serves every request; per-choice state lives in the
/// <see cref="ReasoningStream"/> it creates.
/// </summary>
public interface IReasoningParser
{
    /// <summary>The name given to <c>--reasoning-parser</c>.</summary>
    string Name { get; }

    /// <summary>The text that opens the thinking, <c>&lt;think&gt;</c>.</summary>
    string StartToken { get; }

    /// <summary>The text that closes it, <c>&lt;/think&gt;</c>.</summary>
    string EndToken { get; }

    /// <summary>The start marker's token id in the served model's vocabulary (the parser is refused without one).</summary>
    int StartTokenId { get; }

    /// <summary>The end marker's token id in the served model's vocabulary.</summary>
    int EndTokenId { get; }

    /// <summary>
    /// vLLM's <c>is_reasoning_end(input_ids)</c>: whether the thinking is over at the end of <paramref name="tokenIds"/>,
    /// looking back from the last token for the nearest marker (an end marker: over; a start marker or none: not).
    /// Structured output uses it so that a grammar constrains only what comes after the thinking: check the prompt's ids
    /// once at admission (a template that closes the thinking itself, as Qwen3's <c>enable_thinking: false</c> does,
    /// ends the reasoning there), then each step's new ids; once true it stays true for the request.
    /// </summary>
    bool IsReasoningEnd(ReadOnlySpan<int> tokenIds);

    /// <summary>vLLM's <c>extract_reasoning</c>: the whole output split into reasoning and content.</summary>
    ReasoningSplit Extract(string modelOutput);

    /// <summary>The per-choice state that splits a streamed output the same way, delta by delta.</summary>
    ReasoningStream CreateStream();
}

/// <summary>
/// A finished output split: <see cref="Reasoning"/> is null when the output never entered the thinking, and
/// <see cref="Content"/> is null when nothing follows it (vLLM's <c>(reasoning, content)</c> pair).
/// </summary>
public sealed record ReasoningSplit(string? Reasoning, string? Content);

/// <summary>What one streamed delta (or the end of the output) adds to each channel; either may be empty.</summary>
public readonly record struct ReasoningDelta(string Reasoning, string Content);
