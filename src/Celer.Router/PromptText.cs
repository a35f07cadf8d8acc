using System.Text;
using System.Text.Json;

namespace Celer.Router;

/// <summary>
/// The text a request asks the model to continue, for prefix-aware routing: what a backend's prefix cache would hold.
/// It needs only to be the same for the same prompt and to grow at its end as a conversation grows, not to be the
/// tokenized prompt, which only the backend's chat template and tokenizer could give.
/// </summary>
public static class PromptText
{
    /// <summary>
    /// <c>messages</c> (chat): each message's role and text in order, one line break after each; text parts of a content
    /// array are joined and other parts (images) left out. Otherwise <c>prompt</c> (completions): a string as it is; a
    /// list of strings (a batch) joined by line breaks; token ids written out as numbers. Anything else: empty.
    /// </summary>
    public static string Extract(JsonElement body)
    {
        var text = new StringBuilder();
        if (body.TryGetProperty("messages", out var messages) && messages.ValueKind == JsonValueKind.Array)
        {
            foreach (var message in messages.EnumerateArray().Where(m => m.ValueKind == JsonValueKind.Object))
            {
                if (message.TryGetProperty("role", out var role) && role.ValueKind == JsonValueKind.String)
                    text.Append(role.GetString()).Append('\n');
                if (message.TryGetProperty("content", out var content))
                    AppendContent(text, content);
                text.Append('\n');
            }
        }
        else if (body.TryGetProperty("prompt", out var prompt))
        {
            AppendPrompt(text, prompt);
        }
        return text.ToString();
    }

    private static void AppendContent(StringBuilder text, JsonElement content)
    {
        if (content.ValueKind == JsonValueKind.String)
        {
            text.Append(content.GetString());
            return;
        }
        if (content.ValueKind != JsonValueKind.Array)
            return;
        foreach (var part in content.EnumerateArray())
        {
            if (part.ValueKind == JsonValueKind.Object && part.TryGetProperty("text", out var partText) && partText.ValueKind == JsonValueKind.String)
                text.Append(partText.GetString());
        }
    }

    private static void AppendPrompt(StringBuilder text, JsonElement prompt)
    {
        switch (prompt.ValueKind)
        {
            case JsonValueKind.String:
                text.Append(prompt.GetString());
                break;
            case JsonValueKind.Number:
                // A token id; the comma keeps [1, 23] and [12, 3] apart.
                text.Append(prompt.GetRawText()).Append(',');
                break;
            case JsonValueKind.Array:
                var first = true;
                foreach (var element in prompt.EnumerateArray())
                {
                    if (!first && element.ValueKind is JsonValueKind.String or JsonValueKind.Array)
                        text.Append('\n');
                    first = false;
                    AppendPrompt(text, element);
                }
                break;
        }
    }
}
