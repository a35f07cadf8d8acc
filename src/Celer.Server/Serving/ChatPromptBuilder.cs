using System.Text.Json;
using System.Text.Json.Nodes;
using Celer.ChatTemplates;
using Celer.Server.Media;
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

/// <summary>
/// The rendered prompt, the conversation as the template got it (for <c>echo</c>), and the request's image parts in the
/// order of their placeholders in the prompt.
/// </summary>
internal sealed record ChatPrompt(string Text, JsonArray Conversation, IReadOnlyList<ImagePart> Images);

/// <summary>What a model takes in message content, and how its template is handed the content.</summary>
internal sealed record ChatContentRules
{
    public static readonly ChatContentRules TextOnly = new();

    /// <summary>vLLM's <c>--chat-template-content-format</c>; null: <c>auto</c>, the template's own (<see cref="ChatTemplate.ContentFormat"/>).</summary>
    public ChatTemplateContentFormat? Format { get; init; }

    /// <summary>The text of the model's image token (LLaVA's <c>&lt;image&gt;</c>); null: the model takes text only.</summary>
    public string? ImagePlaceholder { get; init; }

    /// <summary>
    /// vLLM's <c>--interleave-mm-strings</c>: in the string format, each image's placeholder where its part is among the
    /// text parts, rather than all of them before the text.
    /// </summary>
    public bool InterleaveStrings { get; init; }

    /// <summary>Most image parts in one request (<c>--limit-mm-per-prompt</c>).</summary>
    public int ImageLimit { get; init; } = MediaOptions.DefaultImageLimit;

    /// <summary>Why image parts are refused although the model takes them (an endpoint that loads no images); null: taken.</summary>
    public string? ImagesRefused { get; init; }
}

/// <summary>Checked messages before the template is chosen: content as a string, null, or a list of text and image parts.</summary>
internal sealed record ParsedMessages(JsonArray Messages, IReadOnlyList<ImagePart> Images);

/// <summary>
/// Turns OpenAI chat messages into the prompt text, the way vLLM does before tokenizing: message content in the
/// template's content format (one string, text parts joined by newlines and each image's placeholder before them; or
/// OpenAI's parts, each image a <c>{"type": "image"}</c>), tool-call arguments parsed back into objects for the
/// template, then the Jinja chat template rendered with <c>messages</c>, <c>tools</c>, <c>add_generation_prompt</c>,
/// <c>bos_token</c>, <c>eos_token</c> and the request's <c>chat_template_kwargs</c>.
/// </summary>
internal static class ChatPromptBuilder
{
    private static readonly HashSet<string> KnownRoles = ["system", "developer", "user", "assistant", "tool", "function"];

    /// <param name="loadsImages">Whether the endpoint loads image parts (chat completions); the others refuse them.</param>
    public static ChatPrompt Render(ChatRenderRequest request, ServingModel model, bool loadsImages = false) =>
        Render(request, model.TokenizerConfig, model.SpecialTokenTexts, model.GetChatTemplate, model.ContentRules(loadsImages));

    /// <summary>
    /// The render itself, from what it needs of the served model: the tokenizer's special tokens (<c>bos_token</c>,
    /// <c>eos_token</c>, and the texts messages may not contain), the template a request gets (its own
    /// <c>chat_template</c> or the model's), looked up after the messages are checked, and the content rules.
    /// </summary>
    internal static ChatPrompt Render(ChatRenderRequest request, TokenizerConfig tokenizerConfig, IReadOnlyList<string> specialTokenTexts,
        Func<string?, ChatTemplate> getChatTemplate, ChatContentRules? contentRules = null)
    {
        var rules = contentRules ?? ChatContentRules.TextOnly;
        if (request.AddGenerationPrompt && request.ContinueFinalMessage)
            throw OpenAIException.BadRequest("Cannot set both `continue_final_message` and `add_generation_prompt` to True.", "continue_final_message");

        var parsed = ParseMessages(request.Messages, rules);
        // The placeholder is refused as text too: typed by the client it would become an image token with no image.
        RejectSpecialTokenText(parsed.Messages,
            rules.ImagePlaceholder is { } placeholder && !specialTokenTexts.Contains(placeholder) ? [.. specialTokenTexts, placeholder] : specialTokenTexts);
        var template = getChatTemplate(request.ChatTemplate);
        var conversation = InContentFormat(parsed.Messages, rules.Format ?? template.ContentFormat, rules.ImagePlaceholder, rules.InterleaveStrings);

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
        return new ChatPrompt(text, conversation, parsed.Images);
    }

    /// <summary>
    /// Message text that spells a special token (<c>&lt;|im_start|&gt;</c>, <c>&lt;/s&gt;</c>, …) would be tokenized as that
    /// control token once rendered into the prompt, letting a client forge turns or end the prompt early; it is
    /// refused with a 400 rather than silently reinterpreted (BAD_INPUT.md row 19).
    /// </summary>
    private static void RejectSpecialTokenText(JsonArray messages, IReadOnlyList<string> specialTokens)
    {
        for (var i = 0; i < messages.Count; i++)
        {
            switch (messages[i]?["content"])
            {
                case JsonValue value when value.TryGetValue(out string? text):
                    Check(text, $"messages[{i}].content");
                    break;
                case JsonArray parts:
                    for (var j = 0; j < parts.Count; j++)
                    {
                        if (parts[j]?["text"] is JsonValue part && part.TryGetValue(out string? partText))
                            Check(partText, $"messages[{i}].content[{j}]");
                    }
                    break;
            }
        }

        void Check(string text, string param)
        {
            if (SpecialTokenIn(text, specialTokens) is { } special)
                throw OpenAIException.BadRequest($"{param} contains the text of the special token '{special}', which cannot be sent inside a message.", param);
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

    /// <summary>
    /// Validates the messages array: roles, content (a string, null, or text and image parts, normalized to
    /// <c>{"type": "text", "text": …}</c> and <c>{"type": "image"}</c>), tool calls; collects the image parts in order.
    /// </summary>
    internal static ParsedMessages ParseMessages(JsonElement? messages, ChatContentRules rules)
    {
        if (messages is not { ValueKind: JsonValueKind.Array } array)
            throw OpenAIException.BadRequest("`messages` must be a non-empty array of messages.", "messages");
        if (array.GetArrayLength() == 0)
            throw OpenAIException.BadRequest("`messages` must contain at least one message.", "messages");

        var parsed = new JsonArray();
        var images = new List<ImagePart>();
        var index = 0;
        foreach (var message in array.EnumerateArray())
        {
            parsed.Add((JsonNode)ParseMessage(message, index, rules, images));
            index++;
        }
        return new ParsedMessages(parsed, images);
    }

    private static JsonObject ParseMessage(JsonElement message, int index, ChatContentRules rules, List<ImagePart> images)
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
                result["content"] = ParseContent(property.Value, $"{param}.content", rules, images);
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

    /// <summary>A string or null stays; an array becomes its parts, normalized, each image recorded.</summary>
    private static JsonNode? ParseContent(JsonElement content, string param, ChatContentRules rules, List<ImagePart> images)
    {
        switch (content.ValueKind)
        {
            case JsonValueKind.Null:
                return null;
            case JsonValueKind.String:
                return JsonValue.Create(content.GetString());
            case JsonValueKind.Array:
                var parts = new JsonArray();
                var j = 0;
                foreach (var part in content.EnumerateArray())
                {
                    var partParam = $"{param}[{j++}]";
                    if (ImageUrlOf(part, partParam) is { } url)
                    {
                        AddImage(url, partParam, rules, images);
                        parts.Add((JsonNode)new JsonObject { ["type"] = "image" });
                    }
                    else
                    {
                        parts.Add((JsonNode)new JsonObject { ["type"] = "text", ["text"] = TextOf(part, partParam) });
                    }
                }
                return parts;
            default:
                throw OpenAIException.BadRequest($"{param} must be a string or an array of content parts.", param);
        }
    }

    /// <summary>The text of a <c>text</c> (or Responses-style <c>input_text</c>) part; any other part is a 400.</summary>
    private static string TextOf(JsonElement part, string param)
    {
        if (part.ValueKind != JsonValueKind.Object || !part.TryGetProperty("type", out var type) || type.ValueKind != JsonValueKind.String)
            throw OpenAIException.BadRequest($"{param} must be an object with a string `type`.", param);
        var typeName = type.GetString();
        if (typeName is not ("text" or "input_text"))
            throw OpenAIException.BadRequest($"Unsupported chat content part type '{typeName}' in {param}: the supported types are text, input_text, image_url and input_image.", param);
        if (!part.TryGetProperty("text", out var text) || text.ValueKind != JsonValueKind.String)
            throw OpenAIException.BadRequest($"The text part {param} must have a string `text`.", param);
        return text.GetString()!;
    }

    /// <summary>
    /// The URL of an image part in the shapes vLLM reads: OpenAI's <c>{"type": "image_url", "image_url": {"url": …}}</c>
    /// (its <c>detail</c> ignored, as vLLM ignores it), the Responses API's <c>{"type": "input_image", "image_url": "…"}</c>,
    /// and the untyped <c>{"image_url": "…"}</c> or <c>{"image_url": {"url": …}}</c>; null for any other part.
    /// </summary>
    private static string? ImageUrlOf(JsonElement part, string param)
    {
        if (part.ValueKind != JsonValueKind.Object)
            return null;
        if (!part.TryGetProperty("image_url", out var imageUrl))
        {
            return part.TryGetProperty("type", out var partType) && partType.ValueKind == JsonValueKind.String && partType.GetString() is "image_url" or "input_image"
                ? throw OpenAIException.BadRequest($"The image part {param} has no `image_url`.", param)
                : null;
        }
        string? typeName = null;
        if (part.TryGetProperty("type", out var type))
        {
            // Another type beside an image_url field: the part is read by its type.
            if (type.ValueKind != JsonValueKind.String || type.GetString() is not ("image_url" or "input_image"))
                return null;
            typeName = type.GetString();
        }

        // vLLM validates "image_url" against OpenAI's object shape and "input_image" against the Responses API's string.
        var url = imageUrl.ValueKind switch
        {
            JsonValueKind.Object when typeName != "input_image" =>
                imageUrl.TryGetProperty("url", out var inner) && inner.ValueKind == JsonValueKind.String ? inner.GetString() : null,
            JsonValueKind.String when typeName != "image_url" => imageUrl.GetString(),
            _ => null,
        };
        if (url is null)
        {
            throw OpenAIException.BadRequest(typeName == "input_image"
                ? $"The image part {param} must have a string `image_url`."
                : $"The image part {param} must have `image_url` as an object with a string `url`, as in {{\"type\": \"image_url\", \"image_url\": {{\"url\": \"data:image/png;base64,…\"}}}}.", param);
        }
        return url.Length > 0 ? url : throw OpenAIException.BadRequest($"The image part {param} has an empty URL.", param);
    }

    private static void AddImage(string url, string param, ChatContentRules rules, List<ImagePart> images)
    {
        if (rules.ImagePlaceholder is null)
            throw OpenAIException.BadRequest($"Content part type 'image_url' is not supported: this model takes text only ({param}).", param);
        if (rules.ImagesRefused is { } reason)
            throw OpenAIException.BadRequest($"{reason} ({param})", param);
        if (images.Count == rules.ImageLimit)
        {
            // vLLM's wording (BaseMultiModalProcessingInfo.validate_num_items).
            throw OpenAIException.BadRequest(
                $"At most {rules.ImageLimit} image(s) may be provided in one prompt. Set `--limit-mm-per-prompt` to increase this limit.", param);
        }
        images.Add(new ImagePart(url, param));
    }

    /// <summary>
    /// The messages as the template reads their content (vLLM's <c>_parse_chat_message_content</c>). String format: a
    /// list becomes one string, its texts joined by "\n" with the image placeholders, one per image, before them (vLLM's
    /// <c>_get_full_multimodal_text_prompt</c>: missing placeholders go in front, joined by "\n"), or with
    /// <paramref name="interleave"/> every part in its order, an image as its placeholder. OpenAI format: a string
    /// becomes one text part, and a tool message of text parts only is joined back into a string, as vLLM does for the
    /// templates that read tool results as text.
    /// </summary>
    internal static JsonArray InContentFormat(JsonArray messages, ChatTemplateContentFormat format, string? imagePlaceholder, bool interleave = false)
    {
        var conversation = (JsonArray)messages.DeepClone();
        foreach (var message in conversation.OfType<JsonObject>())
        {
            var content = message["content"];
            if (format == ChatTemplateContentFormat.String && content is JsonArray parts)
            {
                if (interleave)
                {
                    message["content"] = string.Join('\n', parts.Select(p => p?["text"]?.GetValue<string>() ?? imagePlaceholder!));
                    continue;
                }

                var texts = parts.Select(p => p?["text"]?.GetValue<string>()).OfType<string>().ToList();
                var text = string.Join('\n', texts);
                var placeholders = Enumerable.Repeat(imagePlaceholder!, parts.Count - texts.Count);
                message["content"] = string.Join('\n', text.Length > 0 ? placeholders.Append(text) : placeholders);
            }
            else if (format == ChatTemplateContentFormat.OpenAI)
            {
                if (content is JsonValue value && value.TryGetValue(out string? single))
                    message["content"] = new JsonArray(new JsonObject { ["type"] = "text", ["text"] = single });
                if (message["role"]?.GetValue<string>() == "tool" && message["content"] is JsonArray toolParts && toolParts.All(p => p?["type"]?.GetValue<string>() == "text"))
                    message["content"] = string.Join('\n', toolParts.Select(p => p!["text"]!.GetValue<string>()));
            }
        }
        return conversation;
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
        // transformers: of a list of parts, the last text part is the one continued.
        var final = conversation[^1]?["content"] switch
        {
            JsonArray parts => parts.LastOrDefault(p => p?["text"] is not null)?["text"]?.GetValue<string>(),
            JsonValue value when value.TryGetValue(out string? text) => text,
            _ => null,
        };
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

    /// <summary>
    /// The content of the conversation's last message when its role matches (chat <c>echo</c>); of a list of parts, its
    /// texts joined by "\n", as vLLM echoes them.
    /// </summary>
    public static string? LastContentIfRole(JsonArray conversation, string role) =>
        conversation[^1] is JsonObject last && last["role"]?.GetValue<string>() == role
            ? last["content"] switch
            {
                JsonValue content when content.TryGetValue<string>(out var text) => text,
                JsonArray parts => string.Join('\n', parts.Select(p => p?["text"]?.GetValue<string>()).OfType<string>()),
                _ => null,
            }
            : null;
}
