using Celer.Engine;
using Celer.Server.Protocol;
using Celer.Server.ToolCalling;
using Celer.Tokenization;

namespace Celer.Server.Serving;

/// <summary>
/// <c>POST /v1/chat/completions</c> (vLLM's <c>OpenAIServingChat</c>): the messages are rendered
/// through the chat template, tokenized without adding special tokens again (the template writes
/// them), checked, their images loaded, and sent to the engine as one request with n samples. Each choice's output goes through the
/// request's <see cref="ChatOutputPlan"/>: the reasoning parser and the tool choice's parser, when there are any.
/// </summary>
internal sealed partial class ChatService(ServingModel model, AdmissionControl admission, ILogger<ChatService> logger, ServerOptions options, ChatParsers parsers)
{
    private const string AssistantRole = "assistant";

    /// <summary>OpenAI's finish reason for a reply that called tools.</summary>
    private const string ToolCallsFinishReason = "tool_calls";

    /// <param name="PromptTokens">The prompt's tokens as the model reads them (and usage counts them): each image's features, not its one placeholder.</param>
    private sealed record Prepared(string Id, string ModelName, ChatCompletionRequest Request, ChatPrompt Prompt, GenerateRequest EngineRequest, string Role, ChatOutputPlan Plan, int PromptTokens);

    private sealed record Started(Prepared Prepared, IAsyncEnumerable<RequestOutput> Stream);

    public async Task<IResult> HandleAsync(HttpContext context, ChatCompletionRequest request)
    {
        var prepared = await PrepareAsync(request, context.RequestAborted);
        // The lease goes to the streaming result, or is disposed by the using below or when the engine refuses.
#pragma warning disable CA2000
        var lease = admission.Enter(1, prepared.EngineRequest.Params.N);
#pragma warning restore CA2000
        IAsyncEnumerable<RequestOutput> stream;
        try
        {
            // The engine's admission errors throw here, before any response is started.
            stream = model.Engine.GenerateAsync(prepared.EngineRequest, context.RequestAborted);
        }
        catch
        {
            lease.Dispose();
            throw;
        }
        var started = new Started(prepared, stream);
        if (options.EnableLogRequests && logger.IsEnabled(LogLevel.Information))
            LogReceived(prepared.Id, prepared.PromptTokens, prepared.EngineRequest.Params.N, request.Stream == true);

        if (request.Stream == true)
            return new StreamingResult(ctx => StreamAsync(ctx, started), lease);
        using (lease)
            return TypedResults.Json(await CompleteAsync(started), ServerJsonContext.Wire.ChatCompletionResponse);
    }

    [LoggerMessage(Level = LogLevel.Information, Message = "Received request {RequestId}: {PromptTokens} prompt tokens, n={N}, stream={Stream}")]
    private partial void LogReceived(string requestId, int promptTokens, int n, bool stream);

    private async Task<Prepared> PrepareAsync(ChatCompletionRequest request, CancellationToken cancellationToken)
    {
        var modelName = model.PrimaryName;
        UnsupportedFields.Check(request);

        var prompt = ChatPromptBuilder.Render(new ChatRenderRequest(
            request.Messages, request.Tools, request.ToolChoice,
            request.AddGenerationPrompt ?? true, request.ContinueFinalMessage ?? false,
            request.ChatTemplate, request.ChatTemplateKwargs)
        {
            // vLLM's --exclude-tools-when-tool-choice-none: a "none" request's prompt is rendered as if it had no tools.
            ExcludeTools = options.ExcludeToolsWhenToolChoiceNone && ToolChoice.IsNone(request.ToolChoice),
        }, model, loadsImages: true);
        // After rendering, which checks the tools' shape: a malformed tool is reported as such, not as a tool choice problem.
        var toolChoice = ToolChoice.Resolve(request, parsers.Tools is not null);
        var promptIds = EncodePrompt(prompt, model.Tokenizer, model.ImageTokenId, request.AddSpecialTokens ?? false);
        // The context holds each image's features: max_tokens' default and usage count them, as the engine does.
        var promptTokens = promptIds.Length + prompt.Images.Count * (model.FeaturesPerImage - 1);

        var sampling = ApplyToolChoice(SamplingParamsFactory.ForChat(request, model.Defaults, promptTokens, model.MaxModelLen), request, toolChoice);
        if (sampling.StructuredOutputs is { } constraint && parsers.Reasoning is { } reasoning && !reasoning.IsReasoningEnd(promptIds))
        {
            // vLLM: a reasoning model thinks freely; the constraint applies after its end of thinking (unless the
            // template already closed the thinking in the prompt, as Qwen3's enable_thinking: false does).
            sampling = sampling with { StructuredOutputs = constraint with { ReasoningEndTokenIds = reasoning.EndTokenIds } };
        }

        sampling.Validate(model.VocabSize, model.MaxLogprobs);
        ContextLength.Check(promptTokens, sampling.MaxTokens, model.MaxModelLen, "messages");

        var id = "chatcmpl-" + Guid.NewGuid().ToString("N");
        // vLLM: the reply's role is the assistant's, unless the client continues the last message.
        var role = request.AddGenerationPrompt ?? true
            ? AssistantRole
            : prompt.Conversation[^1]?["role"]?.GetValue<string>() ?? AssistantRole;
        // Last, once everything cheap has been checked: the images are fetched and decoded only for a request that is otherwise sound.
        var images = await model.Images.LoadAsync(prompt.Images, cancellationToken);
        var engineRequest = new GenerateRequest(id, promptIds, sampling, request.Priority ?? 0, request.CacheSalt) { Images = images };
        var plan = new ChatOutputPlan(parsers.Reasoning, request.IncludeReasoning ?? true, toolChoice, parsers.Tools,
            new ToolCallContext(request.Tools), request.ParallelToolCalls ?? true);
        return new Prepared(id, modelName, request, prompt, engineRequest, role, plan, promptTokens);
    }

    /// <summary>
    /// The rendered prompt's token ids, which must hold the model's image token exactly once per image part, in their
    /// order (the engine pairs the n-th token with the n-th image): a template that drops or repeats an image, or text
    /// that tokenizes to the image token, is refused rather than misaligned.
    /// </summary>
    internal static int[] EncodePrompt(ChatPrompt prompt, Tokenizer tokenizer, int? imageTokenId, bool addSpecialTokens)
    {
        var promptIds = tokenizer.Encode(prompt.Text, addSpecialTokens);
        if (promptIds.Length == 0)
            throw OpenAIException.BadRequest("The rendered chat prompt is empty.", "messages");
        if (imageTokenId is { } imageToken && promptIds.Count(id => id == imageToken) is var placeholders && placeholders != prompt.Images.Count)
        {
            throw OpenAIException.BadRequest(
                $"The rendered prompt has {placeholders} image token(s) ('{tokenizer.IdToToken(imageToken)}', id {imageToken}) for {prompt.Images.Count} image part(s): "
                + "the chat template must write one per image (check --chat-template-content-format), and message text may not spell the image token.",
                "messages");
        }
        return promptIds;
    }

    /// <summary>
    /// vLLM's <c>adjust_request</c>: <c>required</c> and a named function constrain the output to the JSON schema of the
    /// calls (overriding any <c>response_format</c>); a parser whose markers are special tokens keeps special tokens in the
    /// text, the tool parser's whenever tools may be called, the reasoning parser's always. vLLM reads gpt-oss's harmony
    /// from the token ids; Celer's parsers read the text, which then has the markers exactly as the token ids do: no
    /// spaces around them either, as vLLM's fast-tokenizer detokenizer never puts any there.
    /// </summary>
    private SamplingParams ApplyToolChoice(SamplingParams sampling, ChatCompletionRequest request, ToolChoice toolChoice)
    {
        var schema = toolChoice.Mode switch
        {
            ToolChoiceMode.Required => ToolSchemas.ForRequired(request.Tools!),
            ToolChoiceMode.Named => ToolSchemas.ForNamed(request.Tools!, toolChoice.FunctionName!),
            _ => null,
        };
        if (schema is not null)
            sampling = sampling with { StructuredOutputs = new StructuredOutputsParams { Json = schema.ToJsonString() } };
        if ((toolChoice.Mode != ToolChoiceMode.None && parsers.Tools is { KeepsSpecialTokens: true }) || parsers.Reasoning is { KeepsSpecialTokens: true })
            sampling = sampling with { SkipSpecialTokens = false, SpacesBetweenSpecialTokens = false };
        return sampling;
    }

    private async Task<ChatCompletionResponse> CompleteAsync(Started started)
    {
        var prepared = started.Prepared;
        var request = prepared.Request;
        var acc = new RequestAccumulator(prepared.EngineRequest.Params.N);
        await foreach (var output in started.Stream)
            acc.Add(output);

        var formatter = new LogprobsFormatter(model.Tokenizer, request.ReturnTokensAsTokenIds == true);
        var echo = request.Echo == true ? ChatPromptBuilder.LastContentIfRole(prepared.Prompt.Conversation, prepared.Role) ?? "" : "";
        var choices = new List<ChatChoice>(acc.Sequences.Length);
        for (var i = 0; i < acc.Sequences.Length; i++)
        {
            var sequence = acc.Sequences[i];
            var logprobs = request.Logprobs == true
                ? new ChatLogprobs(formatter.ChatLogprobs(sequence.TokenIds, sequence.Logprobs, request.TopLogprobs ?? 0))
                : null;
            var (message, calledTools) = AssembleMessage(prepared, echo, sequence.Text.ToString());
            choices.Add(new ChatChoice(i, message, logprobs,
                calledTools ? ToolCallsFinishReason : FinishReasons.ToWire(sequence.FinishReason), StopReasonJson.From(sequence.StopReason)));
        }
        var promptTokens = prepared.PromptTokens;
        var completionTokens = acc.CompletionTokens;
        var promptLogprobs = acc.PromptLogprobs is { } pl && request.PromptLogprobs is not null ? formatter.PromptLogprobs(pl) : null;
        return new ChatCompletionResponse(prepared.Id, Now(), prepared.ModelName, choices,
            new UsageInfo(promptTokens, promptTokens + completionTokens, completionTokens), promptLogprobs);
    }

    /// <summary>A finished choice's message: its text through the request's parsers; whether it called tools.</summary>
    internal static (ChatMessage Message, bool CalledTools) AssembleMessage(ChatOutputPlan plan, string role, string echo, string text)
    {
        if (!plan.ParsesOutput)
            return (new ChatMessage(role, echo + text), false);
        var parser = new ChoiceOutputParser(plan);
        parser.Push(text, final: true);
        var result = parser.Result();
        // vLLM puts the echoed text before whatever content there is.
        var content = echo.Length > 0 ? echo + result.Content : result.Content;
        var message = new ChatMessage(role, content)
        {
            ToolCalls = result.ToolCalls,
            ReasoningContent = result.Reasoning,
            Reasoning = result.Reasoning,
        };
        return (message, result.ToolCalls is not null);
    }

    private static (ChatMessage Message, bool CalledTools) AssembleMessage(Prepared prepared, string echo, string text) =>
        AssembleMessage(prepared.Plan, prepared.Role, echo, text);

    /// <summary>What a stream sends for one engine delta of a choice, through its parser when the request has one.</summary>
    internal static ChatDelta StreamDelta(ChoiceOutputParser? parser, string text, bool final)
    {
        if (parser is null)
            return new ChatDelta(null, text.Length > 0 || final ? text : null);
        var delta = parser.Push(text, final);
        return new ChatDelta(null, delta.Content)
        {
            ReasoningContent = delta.Reasoning,
            Reasoning = delta.Reasoning,
            ToolCalls = delta.ToolCalls,
        };
    }

    private async Task StreamAsync(HttpContext context, Started started)
    {
        var prepared = started.Prepared;
        var request = prepared.Request;
        var n = prepared.EngineRequest.Params.N;
        var formatter = new LogprobsFormatter(model.Tokenizer, request.ReturnTokensAsTokenIds == true);
        var created = Now();
        var sse = await ServerSentEvents.StartAsync(context);
        var acc = new RequestAccumulator(n);
        // stream_options.continuous_usage_stats: each chunk carries its choice's token count so far, as vLLM sends it.
        var continuousUsage = request.StreamOptions?.Continuous == true;
        var promptTokenCount = prepared.PromptTokens;
        var choiceTokens = new int[n];
        var choiceParsers = new ChoiceOutputParser?[n];
        if (prepared.Plan.ParsesOutput)
        {
            for (var i = 0; i < n; i++)
                choiceParsers[i] = new ChoiceOutputParser(prepared.Plan);
        }
        try
        {
            // vLLM's first chunk per choice carries only the role (and the echoed content, if asked).
            var echo = request.Echo == true ? ChatPromptBuilder.LastContentIfRole(prepared.Prompt.Conversation, prepared.Role) : null;
            for (var i = 0; i < n; i++)
                await WriteChunkAsync(new ChatStreamChoice(i, new ChatDelta(prepared.Role, echo ?? ""), null, null), i);

            await foreach (var output in started.Stream)
            {
                acc.Add(output);
                foreach (var delta in output.Outputs)
                {
                    choiceTokens[delta.Index] += delta.TokenIdsDelta.Count;
                    var logprobs = request.Logprobs == true && delta.LogprobsDelta is { Count: > 0 } lp
                        ? new ChatLogprobs(formatter.ChatLogprobs(delta.TokenIdsDelta, lp, request.TopLogprobs ?? 0))
                        : null;
                    var parser = choiceParsers[delta.Index];
                    var chatDelta = StreamDelta(parser, delta.TextDelta, delta.FinishReason is not null);
                    // Nothing new to say (a token held back as a partial character or a possible marker, a prefill step).
                    if (chatDelta is { Content: null, ReasoningContent: null, ToolCalls: null } && delta.FinishReason is null && logprobs is null)
                        continue;
                    var finishReason = delta.FinishReason is null ? null
                        : parser is { SentToolCalls: true } ? ToolCallsFinishReason
                        : FinishReasons.ToWire(delta.FinishReason);
                    await WriteChunkAsync(new ChatStreamChoice(delta.Index, chatDelta, logprobs, finishReason, StopReasonJson.From(delta.StopReason)), delta.Index);
                }
            }

            if (request.StreamOptions?.IncludeUsage == true)
            {
                var promptTokens = prepared.PromptTokens;
                var completionTokens = acc.CompletionTokens;
                await sse.WriteAsync(new ChatCompletionChunk(prepared.Id, created, prepared.ModelName, [],
                    new UsageInfo(promptTokens, promptTokens + completionTokens, completionTokens)), ServerJsonContext.Wire.ChatCompletionChunk);
            }
        }
        catch (OperationCanceledException) when (context.RequestAborted.IsCancellationRequested)
        {
            return;
        }
        catch (Exception e)
        {
            await sse.WriteErrorAsync(ErrorMapping.ToOpenAIException(e, logger));
        }
        await sse.WriteDoneAsync();

        Task WriteChunkAsync(ChatStreamChoice choice, int index) =>
            sse.WriteAsync(new ChatCompletionChunk(prepared.Id, created, prepared.ModelName, [choice],
                continuousUsage ? new UsageInfo(promptTokenCount, promptTokenCount + choiceTokens[index], choiceTokens[index]) : null), ServerJsonContext.Wire.ChatCompletionChunk);
    }

    private static long Now() => DateTimeOffset.UtcNow.ToUnixTimeSeconds();
}
