using Celer.Engine;

namespace Celer.Server.Serving;

/// <summary>
/// An embedding model's sentence-transformers default prompt for one request, applied where
/// <c>SentenceTransformer.encode</c> applies it: before every text the request embeds (vLLM applies none; Celer does, so
/// a model answers as it does in sentence-transformers). When the Pooling module leaves the prompt out
/// (<c>include_prompt</c> false), each prompted input's pooling skips the prompt's tokens: sentence-transformers'
/// <c>prompt_length</c>, counted with the request's <c>add_special_tokens</c>, less what left truncation cut of it.
/// </summary>
internal sealed class DefaultPromptInputs
{
    private readonly SentenceTransformersPrompt _prompt;
    private readonly int _length;

    private DefaultPromptInputs(SentenceTransformersPrompt prompt, int length)
    {
        _prompt = prompt;
        _length = length;
    }

    /// <summary>The model's default prompt for this request; null when the model has none.</summary>
    public static DefaultPromptInputs? For(ServingModel model, bool addSpecialTokens) =>
        model.Engine.Pooler?.DefaultPrompt is { } prompt
            ? new DefaultPromptInputs(prompt, prompt.IncludePrompt ? 0 : prompt.Length(model.Tokenizer, addSpecialTokens))
            : null;

    /// <summary>The text put before each text input.</summary>
    public string Text => _prompt.Text;

    /// <summary>
    /// The pooling of one prompted input that tokenized to <paramref name="tokenized"/> tokens and was cut to
    /// <paramref name="kept"/> (vLLM keeps the last ones). An input with no token after the prompt is refused: its pooling
    /// would average nothing (sentence-transformers answers a zero vector there).
    /// </summary>
    public PoolingParams Pooling(PoolingParams pooling, int tokenized, int kept, string field, int index)
    {
        if (_prompt.IncludePrompt)
            return pooling;
        var excluded = Math.Max(0, _length - (tokenized - kept));
        if (excluded >= kept)
        {
            throw OpenAIException.BadRequest(
                $"`{field}` {index} has no tokens after the model's default prompt '{_prompt.Name}' ({_length} tokens), which its pooling leaves out (include_prompt is false).",
                field);
        }
        return pooling with { ExcludedPromptTokens = excluded };
    }
}
