using Celer.Tokenization;

namespace Celer.Engine;

/// <summary>
/// sentence-transformers' default prompt: the text <c>SentenceTransformer.encode</c> puts before every text it embeds
/// (and sentence-transformers 6's <c>CrossEncoder.predict</c> before each pair's first text) when
/// <c>config_sentence_transformers.json</c> names a <c>default_prompt_name</c>, and whether the Pooling module pools the
/// prompt's tokens (its <c>include_prompt</c>; INSTRUCTOR-style models leave them out).
/// </summary>
/// <param name="Name">The prompt's name in the config's <c>prompts</c>.</param>
/// <param name="Text">The prefix, never empty (sentence-transformers applies no empty prompt).</param>
public sealed record SentenceTransformersPrompt(string Name, string Text, bool IncludePrompt)
{
    /// <summary>
    /// sentence-transformers' <c>prompt_length</c>: the prompt tokenized alone, less a trailing special token (the
    /// [SEP] or EOS the post-processor appends). A leading special token ([CLS], BOS) counts, so masking this many
    /// positions of the prompted input covers it and the prompt's own tokens.
    /// </summary>
    public int Length(Tokenizer tokenizer, bool addSpecialTokens)
    {
        int[] ids = tokenizer.Encode(Text, addSpecialTokens);
        return ids.Length > 0 && tokenizer.IsSpecialToken(ids[^1]) ? ids.Length - 1 : ids.Length;
    }
}
