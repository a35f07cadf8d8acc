namespace Celer.Server.Serving;

/// <summary>
/// The context-length check of vLLM's serving layer (<c>_validate_input</c>), done before any request
/// of a batch is admitted so a streamed response never starts for a request that cannot run.
/// The messages carry both numbers (BAD_INPUT.md #7).
/// </summary>
internal static class ContextLength
{
    public const string ExceededCode = "context_length_exceeded";

    /// <param name="promptParam">"prompt" for completions, "messages" for chat.</param>
    public static void Check(int promptTokens, int? maxTokens, int maxModelLen, string promptParam)
    {
        if (promptTokens >= maxModelLen)
            throw OpenAIException.BadRequest(
                $"This model's maximum context length is {maxModelLen} tokens. However, your request has {promptTokens} input tokens. Please reduce the length of the input messages.",
                promptParam, ExceededCode);
        if (maxTokens is { } max && promptTokens + max > maxModelLen)
            throw OpenAIException.BadRequest(
                $"'max_tokens' or 'max_completion_tokens' is too large: {max}. This model's maximum context length is {maxModelLen} tokens and your request has {promptTokens} input tokens ({max} > {maxModelLen} - {promptTokens}).",
                "max_tokens", ExceededCode);
    }
}
