using System.Text.Json;
using Celer.Tokenization;

namespace Celer.Server.Serving;

/// <summary>One prompt of a request: its token ids, and its text when it was given as text (for <c>echo</c>).</summary>
internal sealed record PromptInput(int[] TokenIds, string? Text);

/// <summary>
/// The completions API's <c>prompt</c>, and the embeddings and pooling APIs' <c>input</c>: a string, a list of strings,
/// a list of token ids, or a list of lists of token ids (OpenAI's four forms). Empty prompts and out-of-vocabulary ids
/// are rejected here, before anything is admitted (BAD_INPUT.md #5, #6).
/// </summary>
internal static class CompletionPrompts
{
    /// <summary>Most prompts in one request; each becomes its own engine request, n times over.</summary>
    public const int MaxPrompts = 256;

    /// <summary>How a route names and bounds its prompts.</summary>
    /// <param name="Field">The request field ("prompt", "input"), named in every message and as the error's param.</param>
    /// <param name="MaxCount">Most prompts in one request.</param>
    /// <param name="AllowEmptyText">
    /// Whether "" is a prompt when the tokenizer still makes tokens of it (a BOS): the embeddings rule, where only an input of
    /// no tokens at all is refused; completions refuse "" outright, as vLLM does.
    /// </param>
    /// <param name="TextPrefix">
    /// Put before every text prompt before it is tokenized (an embedding model's sentence-transformers default prompt);
    /// token-id prompts are taken as they are.
    /// </param>
    public sealed record Rules(string Field, int MaxCount, bool AllowEmptyText, string TextPrefix = "");

    private static readonly Rules CompletionRules = new("prompt", MaxPrompts, AllowEmptyText: false);

    public static IReadOnlyList<PromptInput> Parse(JsonElement? prompt, Tokenizer tokenizer, bool addSpecialTokens, int vocabSize) =>
        Parse(prompt, tokenizer, addSpecialTokens, vocabSize, CompletionRules);

    public static IReadOnlyList<PromptInput> Parse(JsonElement? prompt, Tokenizer tokenizer, bool addSpecialTokens, int vocabSize, Rules rules)
    {
        var field = rules.Field;
        if (prompt is not { } element || element.ValueKind == JsonValueKind.Null)
            throw OpenAIException.BadRequest($"`{field}` is required.", field);

        switch (element.ValueKind)
        {
            case JsonValueKind.String:
                return [FromText(element.GetString()!, tokenizer, addSpecialTokens, rules)];
            case JsonValueKind.Array:
                var length = element.GetArrayLength();
                if (length == 0)
                    throw OpenAIException.BadRequest($"`{field}` cannot be empty.", field);
                return element[0].ValueKind switch
                {
                    JsonValueKind.Number => [FromTokenIds(element, vocabSize, field)],
                    JsonValueKind.String => ParseList(element, rules, e => e.ValueKind == JsonValueKind.String ? FromText(e.GetString()!, tokenizer, addSpecialTokens, rules) : null),
                    JsonValueKind.Array => ParseList(element, rules, e => e.ValueKind == JsonValueKind.Array ? FromTokenIds(e, vocabSize, field) : null),
                    _ => throw InvalidShape(field),
                };
            default:
                throw InvalidShape(field);
        }
    }

    private static List<PromptInput> ParseList(JsonElement array, Rules rules, Func<JsonElement, PromptInput?> parseOne)
    {
        var length = array.GetArrayLength();
        if (length > rules.MaxCount)
            throw OpenAIException.BadRequest($"`{rules.Field}` can hold at most {rules.MaxCount} {rules.Field}s, got {length}.", rules.Field);
        var prompts = new List<PromptInput>(length);
        foreach (var item in array.EnumerateArray())
            prompts.Add(parseOne(item) ?? throw InvalidShape(rules.Field));
        return prompts;
    }

    /// <summary>One text prompt, tokenized; refused when it is empty (unless the rules allow it) or makes no tokens.</summary>
    public static PromptInput FromText(string text, Tokenizer tokenizer, bool addSpecialTokens, Rules rules)
    {
        if (text.Length == 0 && !rules.AllowEmptyText)
            throw OpenAIException.BadRequest($"`{rules.Field}` cannot be an empty string.", rules.Field);
        var ids = tokenizer.Encode(rules.TextPrefix + text, addSpecialTokens);
        if (ids.Length == 0)
            throw OpenAIException.BadRequest($"`{rules.Field}` tokenizes to no tokens{(text.Length == 0 ? " (it is an empty string)" : "")}.", rules.Field);
        return new PromptInput(ids, text);
    }

    private static PromptInput FromTokenIds(JsonElement array, int vocabSize, string field)
    {
        var length = array.GetArrayLength();
        if (length == 0)
            throw OpenAIException.BadRequest($"`{field}` cannot be an empty list of token ids.", field);
        var ids = new int[length];
        var i = 0;
        foreach (var item in array.EnumerateArray())
        {
            if (item.ValueKind != JsonValueKind.Number || !item.TryGetInt32(out var id))
                throw OpenAIException.BadRequest($"Token ids in `{field}` must be integers.", field);
            if (id < 0 || id >= vocabSize)
                throw OpenAIException.BadRequest($"Token id {id} is out of vocabulary (vocabulary size {vocabSize}).", field);
            ids[i++] = id;
        }
        return new PromptInput(ids, null);
    }

    private static OpenAIException InvalidShape(string field) => OpenAIException.BadRequest(
        $"`{field}` must be a string, a list of strings, a list of token ids, or a list of lists of token ids.", field);
}
