using Celer.Engine;
using Celer.Server.Protocol;

namespace Celer.Server.Serving;

/// <summary>
/// The inputs of a one-text-per-request pooling route (<c>/v1/embeddings</c>, <c>/pooling</c>, <c>/classify</c>) as
/// engine requests: <c>input</c> parsed as a completion's prompt (<see cref="CompletionPrompts"/>), or <c>messages</c>
/// rendered by the chat template into one input (vLLM's chat variants of these requests), each truncated by vLLM's
/// <c>truncate_prompt_tokens</c>, checked against the context (vLLM's message, naming the route's operation) and made one
/// pooling request <c>{id}-{index}</c>. Everything is checked here, before anything is admitted; the engine refuses
/// what only it can judge (the model's task, <c>dimensions</c>).
/// </summary>
internal static class PoolingInputs
{
    /// <summary>Most inputs in one request: OpenAI's limit for the embeddings API.</summary>
    public const int MaxInputs = 2048;

    public const string InputField = "input";

    // An empty string is an input as long as the tokenizer makes a token of it (a BOS); only an input of no tokens is refused.
    private static readonly CompletionPrompts.Rules InputRules = new(InputField, MaxInputs, AllowEmptyText: true);

    /// <param name="operation">What vLLM's context-length message calls the route ("embedding generation", "classification").</param>
    /// <remarks>
    /// An embedding request's text inputs start with the model's sentence-transformers default prompt
    /// (<see cref="DefaultPromptInputs"/>); token ids are taken as they are (the prompt is text), a conversation as its
    /// chat template renders it, and a classifier's inputs as they are (sentence-transformers' CrossEncoder has no
    /// prompt for a single text).
    /// </remarks>
    public static List<GenerateRequest> ToEngineRequests(ServingModel model, PoolingInputRequest request, string id, PoolingParams pooling, string operation)
    {
        var keepLast = PoolingBatch.TruncationLength(request.TruncatePromptTokens, model.MaxModelLen);
        var field = request.Messages is null ? InputField : "messages";
        var addSpecialTokens = request.AddSpecialTokens ?? true;
        var prompt = request.Messages is null && pooling.Task == PoolingTask.Embed ? DefaultPromptInputs.For(model, addSpecialTokens) : null;
        var rules = prompt is null ? InputRules : InputRules with { TextPrefix = prompt.Text };
        var inputs = request.Messages is null
            ? CompletionPrompts.Parse(request.Input, model.Tokenizer, addSpecialTokens, model.VocabSize, rules)
            : [new PromptInput(RenderMessages(model, request), null)];
        var engineRequests = new List<GenerateRequest>(inputs.Count);
        for (var i = 0; i < inputs.Count; i++)
        {
            var tokenized = inputs[i].TokenIds;
            var ids = PoolingBatch.KeepLast(tokenized, keepLast);
            if (ids.Length > model.MaxModelLen)
            {
                throw OpenAIException.BadRequest(
                    $"This model's maximum context length is {model.MaxModelLen} tokens. However, you requested {ids.Length} tokens in the input for {operation}. Please reduce the length of the input.",
                    field, "context_length_exceeded");
            }
            var inputPooling = prompt is not null && inputs[i].Text is not null ? prompt.Pooling(pooling, tokenized.Length, ids.Length, field, i) : pooling;
            engineRequests.Add(GenerateRequest.ForPooling($"{id}-{i}", ids, inputPooling, request.Priority ?? 0));
        }
        return engineRequests;
    }

    /// <summary>
    /// vLLM's chat pooling requests: the conversation rendered by the chat template as a chat completion's prompt is
    /// (vLLM's defaults for pooling: no generation prompt, no special tokens beyond the template's), one input.
    /// </summary>
    private static int[] RenderMessages(ServingModel model, PoolingInputRequest request)
    {
        if (request.Input is not null)
            throw OpenAIException.BadRequest("Send either `input` or `messages`, not both.", "messages");
        var prompt = ChatPromptBuilder.Render(new ChatRenderRequest(
            request.Messages, null, null,
            request.AddGenerationPrompt ?? false, request.ContinueFinalMessage ?? false,
            request.ChatTemplate, request.ChatTemplateKwargs), model);
        var ids = model.Tokenizer.Encode(prompt.Text, request.AddSpecialTokens ?? false);
        return ids.Length > 0 ? ids : throw OpenAIException.BadRequest("The rendered chat prompt is empty.", "messages");
    }
}
