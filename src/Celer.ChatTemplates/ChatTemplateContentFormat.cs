namespace Celer.ChatTemplates;

/// <summary>
/// How a template reads a message's <c>content</c> (vLLM's <c>--chat-template-content-format</c>): as one string, or
/// as OpenAI's list of parts (<c>{"type": "text", "text": …}</c>, <c>{"type": "image"}</c>), which multimodal templates
/// iterate to place each image's token.
/// </summary>
public enum ChatTemplateContentFormat
{
    String,
    OpenAI,
}
