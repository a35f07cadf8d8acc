using System.Text;
using Celer.Server.ToolCalling;

namespace Celer.Server.Reasoning;

/// <summary>
/// One choice's gpt-oss output split as it streams (<see cref="GptOssReasoningParser"/>): the bodies of
/// <c>analysis</c> messages are reasoning, the bodies of <c>final</c> messages and of <c>commentary</c> preambles are
/// content, several of each joined with a newline as vLLM's <c>parse_chat_output</c> joins them. A message to a function
/// stays in the content as harmony wrote it, header and terminator included, so that the <c>openai</c> tool-call parser,
/// which reads the content next, finds the call (without that parser a call the model made anyway stays visible, as an
/// unparsed call does in Celer's other formats). Output that is not harmony is content as written. Splitting a whole
/// output in one <see cref="Push"/> and splitting it delta by delta give the same texts.
/// </summary>
public sealed class GptOssReasoningStream : IReasoningStream, IHarmonyListener
{
    private enum Kind
    {
        Reasoning,
        Content,
        Call,
    }

    private readonly HarmonyMessageReader _reader;
    private readonly StringBuilder _reasoning = new();
    private readonly StringBuilder _content = new();
    private Kind _kind = Kind.Content;
    private bool _wroteReasoning;
    private bool _wroteContent;
    private bool _separatorPending;

    internal GptOssReasoningStream() => _reader = new HarmonyMessageReader(this);

    /// <summary>Whether the output has reasoning: false means it all went to the content (vLLM's None for empty reasoning).</summary>
    public bool EnteredThinking => _wroteReasoning;

    /// <summary>Splits the next delta; text that may be the beginning of a marker stays held.</summary>
    public ReasoningDelta Push(string text)
    {
        _reader.Push(text);
        return TakeDelta();
    }

    /// <summary>The end of the output.</summary>
    public ReasoningDelta Finish()
    {
        _reader.Finish();
        return TakeDelta();
    }

    private ReasoningDelta TakeDelta()
    {
        var delta = new ReasoningDelta(_reasoning.ToString(), _content.ToString());
        _reasoning.Clear();
        _content.Clear();
        return delta;
    }

    void IHarmonyListener.OnText(ReadOnlySpan<char> text) => AppendContent(text);

    void IHarmonyListener.OnMessageStart(HarmonyHeader header, string rawHeader)
    {
        if (header.FunctionName is not null)
        {
            _kind = Kind.Call;
            _content.Append(rawHeader);
            return;
        }
        _kind = header.IsReasoning ? Kind.Reasoning : Kind.Content;
        _separatorPending = _kind == Kind.Reasoning ? _wroteReasoning : _wroteContent;
    }

    void IHarmonyListener.OnBody(ReadOnlySpan<char> text)
    {
        switch (_kind)
        {
            case Kind.Call:
                _content.Append(text);
                return;
            case Kind.Content:
                AppendContent(text);
                return;
        }
        if (text.Length == 0)
            return;
        if (_separatorPending)
            _reasoning.Append('\n');
        _separatorPending = false;
        _reasoning.Append(text);
        _wroteReasoning = true;
    }

    void IHarmonyListener.OnMessageEnd(string? terminator)
    {
        // A call keeps its end in the content so that the text after it is not read as its arguments; at the end of the
        // output (null) there is nothing after it.
        if (_kind == Kind.Call && terminator is not null)
            _content.Append(terminator.Length > 0 ? terminator : HarmonyMarkers.Call);
        _kind = Kind.Content;
        _separatorPending = false;
    }

    private void AppendContent(ReadOnlySpan<char> text)
    {
        if (text.Length == 0)
            return;
        if (_separatorPending)
            _content.Append('\n');
        _separatorPending = false;
        _content.Append(text);
        _wroteContent = true;
    }
}
