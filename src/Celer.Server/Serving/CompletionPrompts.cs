using System.Text.Json;
using Celer.Tokenization;

namespace Celer.Server.Serving;

/// <summary>One prompt of a request: its token ids, and its text when it was given as text (for <c>echo</c>).</summary>
internal sealed record PromptInput(int[] TokenIds, string? Text);

/// <summary>
/// The completions API's <c>prompt</c>: a string, a list of strings, a list of token ids, or a list of
/// lists of token ids (OpenAI's four forms). Empty prompts and out-of-vocabulary ids are rejected here,
/// before anything is admitted (BAD_INPUT.md #5, #6).
/// </summary>
internal static class CompletionPrompts
{
    /// <summary>Most prompts in one request; each becomes its own engine request, n times over.</summary>
    public const int MaxPrompts = 256;

    public static IReadOnlyList<PromptInput> Parse(JsonElement? prompt, Tokenizer tokenizer, bool addSpecialTokens, int vocabSize)
    {
        if (prompt is not { } element || element.ValueKind == JsonValueKind.Null)
            throw OpenAIException.BadRequest("`prompt` is required.", "prompt");

        switch (element.ValueKind)
        {
            case JsonValueKind.String:
                return [FromText(element.GetString()!, tokenizer, addSpecialTokens)];
            case JsonValueKind.Array:
                var length = element.GetArrayLength();
                if (length == 0)
                    throw OpenAIException.BadRequest("`prompt` cannot be empty.", "prompt");
                return element[0].ValueKind switch
                {
                    JsonValueKind.Number => [FromTokenIds(element, vocabSize)],
                    JsonValueKind.String => ParseList(element, e => e.ValueKind == JsonValueKind.String ? FromText(e.GetString()!, tokenizer, addSpecialTokens) : null),
                    JsonValueKind.Array => ParseList(element, e => e.ValueKind == JsonValueKind.Array ? FromTokenIds(e, vocabSize) : null),
                    _ => throw InvalidShape(),
                };
            default:
                throw InvalidShape();
        }
    }

    private static List<PromptInput> ParseList(JsonElement array, Func<JsonElement, PromptInput?> parseOne)
    {
        var length = array.GetArrayLength();
        if (length > MaxPrompts)
            throw OpenAIException.BadRequest($"`prompt` can hold at most {MaxPrompts} prompts, got {length}.", "prompt");
        var prompts = new List<PromptInput>(length);
        foreach (var item in array.EnumerateArray())
            prompts.Add(parseOne(item) ?? throw InvalidShape());
        return prompts;
    }

    private static PromptInput FromText(string text, Tokenizer tokenizer, bool addSpecialTokens)
    {
        if (text.Length == 0)
            throw OpenAIException.BadRequest("`prompt` cannot be an empty string.", "prompt");
        var ids = tokenizer.Encode(text, addSpecialTokens);
        if (ids.Length == 0)
            throw OpenAIException.BadRequest("`prompt` tokenizes to no tokens.", "prompt");
        return new PromptInput(ids, text);
    }

    private static PromptInput FromTokenIds(JsonElement array, int vocabSize)
    {
        var length = array.GetArrayLength();
        if (length == 0)
            throw OpenAIException.BadRequest("`prompt` cannot be an empty list of token ids.", "prompt");
        var ids = new int[length];
        var i = 0;
        foreach (var item in array.EnumerateArray())
        {
            if (item.ValueKind != JsonValueKind.Number || !item.TryGetInt32(out var id))
                throw OpenAIException.BadRequest("Token ids in `prompt` must be integers.", "prompt");
            if (id < 0 || id >= vocabSize)
                throw OpenAIException.BadRequest($"Token id {id} is out of vocabulary (vocabulary size {vocabSize}).", "prompt");
            ids[i++] = id;
        }
        return new PromptInput(ids, null);
    }

    private static OpenAIException InvalidShape() => OpenAIException.BadRequest(
        "`prompt` must be a string, a list of strings, a list of token ids, or a list of lists of token ids.", "prompt");
}
