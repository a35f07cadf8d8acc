using System.Text;
using Celer.Server.Protocol;
using Celer.Server.Reasoning;
using Celer.Tokenization;

namespace Celer.Server.ToolCalling;

/// <summary>The server's reasoning and tool-call parsers, made once at startup from its flags.</summary>
internal sealed class ChatParsers(IReasoningParser? reasoning, IToolParser? tools)
{
    /// <summary><c>--reasoning-parser</c>.</summary>
    public IReasoningParser? Reasoning { get; } = reasoning;

    /// <summary><c>--tool-call-parser</c>, present only with <c>--enable-auto-tool-choice</c> (vLLM uses it only then).</summary>
    public IToolParser? Tools { get; } = tools;

    /// <summary>The parsers the options name, checked against the served model's tokenizer; a bad one fails startup.</summary>
    public static ChatParsers Create(ServerOptions options, Tokenizer tokenizer)
    {
        ToolParserRegistry.CheckOptions(options.EnableAutoToolChoice, options.ToolCallParser);
        var reasoning = options.ReasoningParser is { } reasoningName ? ReasoningParserRegistry.Create(reasoningName, tokenizer) : null;
        var tools = options.EnableAutoToolChoice ? ToolParserRegistry.Create(options.ToolCallParser!, tokenizer) : null;
        return new ChatParsers(reasoning, tools);
    }
}

/// <summary>How one chat request's output is read: reasoning first, then tool calls in what remains.</summary>
/// <param name="Reasoning">The server's reasoning parser, if any.</param>
/// <param name="IncludeReasoning">vLLM's <c>include_reasoning</c>: false drops the reasoning text (it is still split off).</param>
/// <param name="ToolChoice">The request's checked tool choice.</param>
/// <param name="ToolParser">The server's auto tool-call parser, if any; its ids are the ones the model's template takes back.</param>
/// <param name="Context">The request's tools, for parsers that type values by schema.</param>
/// <param name="ParallelToolCalls">OpenAI's <c>parallel_tool_calls</c>: false keeps only the first call.</param>
internal sealed record ChatOutputPlan(
    IReasoningParser? Reasoning,
    bool IncludeReasoning,
    ToolChoice ToolChoice,
    IToolParser? ToolParser,
    ToolCallContext Context,
    bool ParallelToolCalls)
{
    /// <summary>Whether the output is parsed at all; if not, it is content as the engine wrote it.</summary>
    public bool ParsesOutput => Reasoning is not null || ToolChoice.Mode != ToolChoiceMode.None;

    public int MaxToolCalls => ParallelToolCalls ? int.MaxValue : 1;

    public ToolCallExtractor? CreateExtractor(ToolCallSink sink) => ToolChoice.Mode switch
    {
        ToolChoiceMode.Auto => ToolParser!.CreateExtractor(sink, Context),
        ToolChoiceMode.Required => new RequiredToolCallExtractor(sink),
        ToolChoiceMode.Named => new NamedToolCallExtractor(sink, ToolChoice.FunctionName!),
        _ => null,
    };

    public string NewToolCallId() => ToolParser?.NewToolCallId() ?? ToolCallIds.Random();
}

/// <summary>What one streamed chunk of a choice says: any of reasoning, content and tool-call deltas.</summary>
internal sealed record ChoiceDelta(string? Reasoning, string? Content, IReadOnlyList<ChatToolCallDelta>? ToolCalls);

/// <summary>A finished choice's message parts.</summary>
internal sealed record ChoiceResult(string? Reasoning, string? Content, IReadOnlyList<ChatToolCall>? ToolCalls);

/// <summary>
/// One choice's output through the request's <see cref="ChatOutputPlan"/>: the reasoning parser splits off the thinking,
/// and the tool-call extractor reads what follows. A stream pushes each engine delta and sends what came of it; a
/// finished answer pushes the whole text once and reads <see cref="Result"/>, so both give the same reasoning, content
/// and calls. Where the output breaks the format after a stream sent part of a call, the stream keeps what it sent and
/// the finished answer falls back to plain content, as in vLLM.
/// </summary>
internal sealed class ChoiceOutputParser
{
    private readonly ChatOutputPlan _plan;
    private readonly IReasoningStream? _reasoning;
    private readonly ToolCallSink? _sink;
    private readonly ToolCallExtractor? _extractor;
    private readonly StringBuilder _reasoningText = new();
    private readonly StringBuilder _contentText = new();
    private readonly List<string> _sentIds = [];
    private readonly List<int> _sentArguments = [];
    private int _sentContent;

    public ChoiceOutputParser(ChatOutputPlan plan)
    {
        _plan = plan;
        _reasoning = plan.Reasoning?.CreateStream();
        if (plan.ToolChoice.Mode != ToolChoiceMode.None)
        {
            _sink = new ToolCallSink();
            _extractor = plan.CreateExtractor(_sink);
        }
    }

    /// <summary>Whether a stream has sent a tool call: its finish reason is then <c>tool_calls</c>.</summary>
    public bool SentToolCalls => _sentIds.Count > 0;

    /// <summary>The next piece of the output (<paramref name="final"/>: the last one); what the stream sends for it.</summary>
    public ChoiceDelta Push(string text, bool final)
    {
        string reasoning = "";
        string content = text;
        if (_reasoning is not null)
        {
            var split = _reasoning.Push(text);
            (reasoning, content) = (split.Reasoning, split.Content);
            if (final)
            {
                var tail = _reasoning.Finish();
                (reasoning, content) = (reasoning + tail.Reasoning, content + tail.Content);
            }
        }
        _reasoningText.Append(reasoning);
        _contentText.Append(content);
        var reasoningDelta = _plan.IncludeReasoning && reasoning.Length > 0 ? reasoning : null;
        if (_extractor is null)
            return new ChoiceDelta(reasoningDelta, content.Length > 0 ? content : null, null);

        _extractor.Feed(content);
        if (final)
            _extractor.Finish();
        string? contentDelta = null;
        if (_sink!.Content.Length > _sentContent)
        {
            contentDelta = _sink.Content.ToString(_sentContent, _sink.Content.Length - _sentContent);
            _sentContent = _sink.Content.Length;
        }
        return new ChoiceDelta(reasoningDelta, contentDelta, ToolCallDeltas());
    }

    private List<ChatToolCallDelta>? ToolCallDeltas()
    {
        List<ChatToolCallDelta>? deltas = null;
        int count = Math.Min(_sink!.Calls.Count, _plan.MaxToolCalls);
        for (int i = 0; i < count; i++)
        {
            var call = _sink.Calls[i];
            if (i == _sentIds.Count)
            {
                // A call's first delta carries its id, type and whole name, and the arguments known so far.
                var id = _plan.NewToolCallId();
                _sentIds.Add(id);
                _sentArguments.Add(call.Arguments.Length);
                (deltas ??= []).Add(new ChatToolCallDelta(i, id, "function", new ChatFunctionCallDelta(call.Name, call.Arguments.ToString())));
            }
            else if (call.Arguments.Length > _sentArguments[i])
            {
                var fragment = call.Arguments.ToString(_sentArguments[i], call.Arguments.Length - _sentArguments[i]);
                _sentArguments[i] = call.Arguments.Length;
                (deltas ??= []).Add(new ChatToolCallDelta(i, null, null, new ChatFunctionCallDelta(null, fragment)));
            }
        }
        return deltas;
    }

    /// <summary>The finished choice, after the whole output was pushed with <c>final</c>.</summary>
    public ChoiceResult Result()
    {
        var reasoning = _reasoning is { EnteredThinking: true } && _plan.IncludeReasoning ? _reasoningText.ToString() : null;
        string? content = _contentText.ToString();
        List<ChatToolCall>? calls = null;
        if (_sink is { Failed: false })
        {
            // The text outside any call, as the stream sent it: without the calls, and without what the format does not
            // show the user (harmony's analysis channel when no reasoning parser took it out, its message headers).
            content = _sink.Content.ToString();
            if (_sink.Calls.Count > 0)
            {
                calls = _sink.Calls.Take(_plan.MaxToolCalls)
                    .Select(c => new ChatToolCall(_plan.NewToolCallId(), new ChatFunctionCall(c.Name, c.Arguments.ToString())))
                    .ToList();
            }
        }
        // vLLM: with a reasoning parser or tool calls, no text is null content.
        if (content.Length == 0 && (_reasoning is not null || calls is not null))
            content = null;
        return new ChoiceResult(reasoning, content, calls);
    }
}
