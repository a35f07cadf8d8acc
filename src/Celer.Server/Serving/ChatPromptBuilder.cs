using System.Text.Json;
using System.Text.Json.Nodes;
using Celer.ChatTemplates;
using Celer.Tokenization;

namespace Celer.Server.Serving;

/// <summary>The inputs of one chat-template render, from a chat or a tokenize request.</summary>
internal sealed record ChatRenderRequest(
    JsonElement? Messages,
    JsonArray? Tools,
    JsonNode? ToolChoice,
    bool AddGenerationPrompt,
    bool ContinueFinalMessage,
    string? ChatTemplate,
    JsonObject? ChatTemplateKwargs)
{
    /// <summary>
    /// Validate <see cref="Tools"/> but leave them out of the template (vLLM's <c>--exclude-tools-when-tool-choice-none</c>
    /// with <c>tool_choice: "none"</c>): the template renders the prompt it would for a request without tools.
    /// </summary>
    public bool ExcludeTools { get; init; }
}

/// <summary>The rendered prompt and the parsed conversation (for <c>echo</c>).</summary>
internal sealed record ChatPrompt(string Text, JsonArray Conversation);

/// <summary>
/// Turns OpenAI chat messages into the prompt text, the way vLLM does before tokenizing: message
/// content parts flattened to a string (text parts joined by newlines), tool-call arguments parsed
/// back into objects for the template, then the Jinja chat template rendered with
/// <c>messages</c>, <c>tools</c>, <c>add_generation_prompt</c>, <c>bos_token</c>, <c>eos_token</c> and the
/// request's <c>chat_template_kwargs</c>.
/// </summary>
internal static class ChatPromptBuilder
{
    private static readonly HashSet<string> KnownRoles = ["system", "developer", "user", "assistant", "tool", "function"];

    public static ChatPrompt Render(ChatRenderRequest request, ServingModel model) =>
        Render(request, model.TokenizerConfig, model.SpecialTokenTexts, model.GetChatTemplate);

    /// <summary>
    /// The render itself, from what it needs of the served model: the tokenizer's special tokens (<c>bos_token</c>,
    /// <c>eos_token</c>, and the texts messages may not contain) and the template a request gets (its own
    /// <c>chat_template</c> or the model's), looked up after the messages are checked.
    /// </summary>
    internal static ChatPrompt Render(ChatRenderRequest request, TokenizerConfig tokenizerConfig, IReadOnlyList<string> specialTokenTexts,
        Func<string?, ChatTemplate> getChatTemplate)
    {
        if (request.AddGenerationPrompt && request.ContinueFinalMessage)
            throw OpenAIException.BadRequest("Cannot set both `continue_final_message` and `add_generation_prompt` to True.", "continue_final_message");

        var conversation = ParseMessages(request.Messages);
        RejectSpecialTokenText(conversation, specialTokenTexts);
        var template = getChatTemplate(request.ChatTemplate);

        var context = new JsonObject
        {
            ["add_generation_prompt"] = request.AddGenerationPrompt,
            ["bos_token"] = tokenizerConfig.BosToken,
            ["eos_token"] = tokenizerConfig.EosToken,
        };
        // vLLM lets chat_template_kwargs override the flags above (it merges them last), but never
        // the conversation or the tools: those always come from the request's own fields.
        if (request.ChatTemplateKwargs is { } kwargs)
        {
            foreach (var (key, value) in kwargs)
            {
                if (key is "messages" or "tools" or "conversation")
                    throw OpenAIException.BadRequest($"chat_template_kwargs cannot set '{key}'.", "chat_template_kwargs");
                context[key] = value?.DeepClone();
            }
        }
        context["messages"] = conversation.DeepClone();
        if (request.Tools is { } tools)
        {
            ValidateTools(tools);
            if (!request.ExcludeTools)
                context["tools"] = tools.DeepClone();
        }
        if (request.ToolChoice is { } toolChoice)
            context["tool_choice"] = toolChoice.DeepClone();

        var text = template.Render(context);
        if (request.ContinueFinalMessage)
            text = TrimAfterFinalMessage(text, conversation);
        return new ChatPrompt(text, conversation);
    }

    /// <summary>
    /// Message text that spells a special token (<c>&lt;|im_start|&gt;</c>, <c>&lt;/s&gt;</c>, …) would be tokenized as that
    /// control token once rendered into the prompt, letting a client forge turns or end the prompt early; it is
    /// refused with a 400 rather than silently reinterpreted (BAD_INPUT.md row 19).
    /// </summary>
    private static void RejectSpecialTokenText(JsonArray conversation, IReadOnlyList<string> specialTokens)
    {
        for (var i = 0; i < conversation.Count; i++)
        {
            if (conversation[i]?["content"] is JsonValue value && value.TryGetValue(out string? text) && SpecialTokenIn(text, specialTokens) is { } special)
                throw OpenAIException.BadRequest(
                    $"messages[{i}].content contains the text of the special token '{special}', which cannot be sent inside a message.",
                    $"messages[{i}].content");
        }
    }

    /// <summary>The first special token whose text <paramref name="text"/> contains, or null.</summary>
    internal static string? SpecialTokenIn(string text, IReadOnlyList<string> specialTokens)
    {
        foreach (var special in specialTokens)
        {
            if (text.Contains(special, StringComparison.Ordinal))
                return special;
        }
        return null;
    }

    /// <summary>Validates and flattens the messages array into template-ready objects.</summary>
    internal static JsonArray ParseMessages(JsonElement? messages)
    {
        if (messages is not { ValueKind: JsonValueKind.Array } array)
            throw OpenAIException.BadRequest("`messages` must be a non-empty array of messages.", "messages");
        if (array.GetArrayLength() == 0)
            throw OpenAIException.BadRequest("`messages` must contain at least one message.", "messages");

        var conversation = new JsonArray();
        var index = 0;
        foreach (var message in array.EnumerateArray())
        {
            conversation.Add((JsonNode)ParseMessage(message, index));
            index++;
        }
        return conversation;
    }

    private static JsonObject ParseMessage(JsonElement message, int index)
    {
        var param = $"messages[{index}]";
        if (message.ValueKind != JsonValueKind.Object)
            throw OpenAIException.BadRequest($"{param} must be an object.", param);
        if (!message.TryGetProperty("role", out var roleElement) || roleElement.ValueKind != JsonValueKind.String)
            throw OpenAIException.BadRequest($"{param} must have a string `role`.", $"{param}.role");
        var role = roleElement.GetString()!;
        if (!KnownRoles.Contains(role))
            throw OpenAIException.BadRequest($"{param}.role '{role}' is not one of system, developer, user, assistant, tool.", $"{param}.role");

        var result = new JsonObject();
        foreach (var property in message.EnumerateObject())
        {
            if (property.NameEquals("content"))
                result["content"] = FlattenContent(property.Value, $"{param}.content");
            else if (property.NameEquals("tool_calls"))
                result["tool_calls"] = ParseToolCalls(property.Value, $"{param}.tool_calls");
            else
                result[property.Name] = JsonNode.Parse(property.Value.GetRawText());
        }
        // Templates test `message.content` freely; vLLM gives an absent content as null.
        if (!result.ContainsKey("content"))
            result["content"] = null;
        return result;
    }

    /// <summary>A string stays; an array of parts becomes its text parts joined by "\n" (vLLM's "string" content format).</summary>
    private static JsonNode? FlattenContent(JsonElement content, string param)
    {
        switch (content.ValueKind)
        {
            case JsonValueKind.Null:
                return null;
            case JsonValueKind.String:
                return JsonValue.Create(content.GetString());
            case JsonValueKind.Array:
                var texts = new List<string>();
                foreach (var part in content.EnumerateArray())
                {
                    if (part.ValueKind != JsonValueKind.Object
                        || !part.TryGetProperty("type", out var type) || type.ValueKind != JsonValueKind.String)
                        throw OpenAIException.BadRequest($"Each part of {param} must be an object with a string `type`.", param);
                    var typeName = type.GetString();
                    if (typeName is not ("text" or "input_text"))
                        throw OpenAIException.BadRequest($"Content part type '{typeName}' is not supported: this model takes text only.", param);
                    if (!part.TryGetProperty("text", out var text) || text.ValueKind != JsonValueKind.String)
                        throw OpenAIException.BadRequest($"A text part of {param} must have a string `text`.", param);
                    texts.Add(text.GetString()!);
                }
                return JsonValue.Create(string.Join('\n', texts));
            default:
                throw OpenAIException.BadRequest($"{param} must be a string or an array of content parts.", param);
        }
    }

    /// <summary>
    /// Tool calls as the template expects them: vLLM parses each <c>function.arguments</c> JSON string
    /// into an object, since templates (Llama 3.1, Qwen) iterate the arguments as a mapping.
    /// </summary>
    private static JsonArray ParseToolCalls(JsonElement toolCalls, string param)
    {
        if (toolCalls.ValueKind != JsonValueKind.Array)
            throw OpenAIException.BadRequest($"{param} must be an array.", param);
        var result = new JsonArray();
        foreach (var call in toolCalls.EnumerateArray())
        {
            var node = JsonNode.Parse(call.GetRawText());
            if (node is JsonObject { } callObject
                && callObject["function"] is JsonObject function
                && function["arguments"] is JsonValue arguments
                && arguments.TryGetValue<string>(out var argumentsText))
            {
                try
                {
                    if (JsonNode.Parse(argumentsText) is JsonObject parsed)
                        function["arguments"] = parsed;
                }
                catch (JsonException)
                {
                    throw OpenAIException.BadRequest($"{param}: `function.arguments` must be a JSON object encoded as a string.", param);
                }
            }
            result.Add(node);
        }
        return result;
    }

    /// <summary>Tools must be OpenAI function tools with a name and, if given, an object schema (BAD_INPUT.md #17).</summary>
    private static void ValidateTools(JsonArray tools)
    {
        for (var i = 0; i < tools.Count; i++)
        {
            var param = $"tools[{i}]";
            if (tools[i] is not JsonObject tool
                || tool["type"] is not JsonValue type || !type.TryGetValue<string>(out var typeName) || typeName != "function"
                || tool["function"] is not JsonObject function)
                throw OpenAIException.BadRequest($"{param} must be {{\"type\": \"function\", \"function\": {{...}}}}.", param);
            if (function["name"] is not JsonValue name || !name.TryGetValue<string>(out var nameText) || nameText.Length == 0)
                throw OpenAIException.BadRequest($"{param}.function.name must be a non-empty string.", param);
            if (function.TryGetPropertyValue("parameters", out var parameters) && parameters is not (null or JsonObject))
                throw OpenAIException.BadRequest($"{param}.function.parameters must be a JSON Schema object.", param);
        }
    }

    /// <summary>
    /// <c>continue_final_message</c>: cut the render right after the last message's content so the
    /// model continues it, as transformers' <c>apply_chat_template</c> does (retrying with the content
    /// stripped, since some templates trim messages).
    /// </summary>
    private static string TrimAfterFinalMessage(string rendered, JsonArray conversation)
    {
        var final = conversation[^1]?["content"]?.GetValue<string>();
        if (string.IsNullOrEmpty(final))
            throw OpenAIException.BadRequest("`continue_final_message` needs a final message with text content.", "messages");
        var at = rendered.LastIndexOf(final, StringComparison.Ordinal);
        if (at < 0)
        {
            final = final.Trim();
            at = rendered.LastIndexOf(final, StringComparison.Ordinal);
        }
        if (at < 0)
            throw OpenAIException.BadRequest("`continue_final_message`: the chat template does not render the final message's content.", "messages");
        return rendered[..(at + final.Length)];
    }

    /// <summary>The content of the conversation's last message when its role matches (chat <c>echo</c>).</summary>
    public static string? LastContentIfRole(JsonArray conversation, string role) =>
        conversation[^1] is JsonObject last
        && last["role"]?.GetValue<string>() == role
        && last["content"] is JsonValue content
        && content.TryGetValue<string>(out var text) ? text : null;
}
