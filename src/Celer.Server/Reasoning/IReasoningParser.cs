namespace Celer.Server.Reasoning;

/// <summary>
/// A reasoning parser, vLLM's <c>ReasoningParser</c> (<c>--reasoning-parser</c>): the model writes its thinking apart
/// from its answer (between <c>&lt;think&gt;</c> and <c>&lt;/think&gt;</c>, or in gpt-oss's <c>analysis</c> channel),
/// and the chat endpoint returns that text as <c>reasoning_content</c> (and <c>reasoning</c>) apart from the answer in
/// <c>content</c>. One instance serves every request; per-choice state lives in the <see cref="IReasoningStream"/> it
/// creates.
/// </summary>
public interface IReasoningParser
{
    /// <summary>The name given to <c>--reasoning-parser</c>.</summary>
    string Name { get; }

    /// <summary>The text that opens the thinking, <c>&lt;think&gt;</c>.</summary>
    string StartToken { get; }

    /// <summary>The text that closes it, <c>&lt;/think&gt;</c>.</summary>
    string EndToken { get; }

    /// <summary>
    /// <see cref="EndToken"/> as token ids of the served model's vocabulary: one token for <c>&lt;/think&gt;</c>, several
    /// for gpt-oss's final-answer header. Structured output constrains what follows the whole sequence.
    /// </summary>
    IReadOnlyList<int> EndTokenIds { get; }

    /// <summary>
    /// Whether the markers are special tokens, which a detokenizer that skips special tokens leaves out of the text
    /// (gpt-oss's <c>&lt;|channel|&gt;</c>): every request then decodes with them kept, with no spaces put around them.
    /// </summary>
    bool KeepsSpecialTokens { get; }

    /// <summary>
    /// vLLM's <c>is_reasoning_end(input_ids)</c>: whether the thinking is over at the end of <paramref name="tokenIds"/>.
    /// Structured output uses it so that a grammar constrains only what comes after the thinking: the prompt's ids are
    /// checked once at admission (a template that closes the thinking itself, as Qwen3's <c>enable_thinking: false</c>
    /// does, ends the reasoning there); otherwise the engine waits for <see cref="EndTokenIds"/> in the output.
    /// </summary>
    bool IsReasoningEnd(ReadOnlySpan<int> tokenIds);

    /// <summary>vLLM's <c>extract_reasoning</c>: the whole output split into reasoning and content.</summary>
    ReasoningSplit Extract(string modelOutput);

    /// <summary>The per-choice state that splits a streamed output the same way, delta by delta.</summary>
    IReasoningStream CreateStream();
}

/// <summary>
/// One choice's output split into reasoning and content as it streams. Text that may be the beginning of a marker is
/// held until the next delta, or the end of the output, settles it, so that splitting a whole output in one
/// <see cref="Push"/> and splitting it delta by delta give the same two texts.
/// </summary>
public interface IReasoningStream
{
    /// <summary>Whether the output has (or had) reasoning: false means it all went to the content.</summary>
    bool EnteredThinking { get; }

    /// <summary>Splits the next delta.</summary>
    ReasoningDelta Push(string text);

    /// <summary>The end of the output: held text is what it looked like, and goes to the channel it was in.</summary>
    ReasoningDelta Finish();
}

/// <summary>
/// A finished output split: <see cref="Reasoning"/> is null when the output never entered the thinking, and
/// <see cref="Content"/> is null when nothing follows it (vLLM's <c>(reasoning, content)</c> pair).
/// </summary>
public sealed record ReasoningSplit(string? Reasoning, string? Content)
{
    /// <summary>A whole output through a fresh stream, in one piece.</summary>
    public static ReasoningSplit Of(IReasoningStream stream, string modelOutput)
    {
        ArgumentNullException.ThrowIfNull(stream);
        var body = stream.Push(modelOutput);
        var tail = stream.Finish();
        var content = body.Content + tail.Content;
        return new ReasoningSplit(stream.EnteredThinking ? body.Reasoning + tail.Reasoning : null, content.Length == 0 ? null : content);
    }
}

/// <summary>What one streamed delta (or the end of the output) adds to each channel; either may be empty.</summary>
public readonly record struct ReasoningDelta(string Reasoning, string Content);
