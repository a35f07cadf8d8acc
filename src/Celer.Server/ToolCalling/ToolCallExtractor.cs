using System.Text;

namespace Celer.Server.ToolCalling;

/// <summary>
/// Reads one choice's content as a model's tool-call format, delta by delta, into a <see cref="ToolCallSink"/>. A
/// finished answer feeds it the whole text at once; a stream feeds it each delta and sends what the sink gained, so both
/// see the same calls. Text that may be the beginning of a marker is held until the next delta settles it, and text read
/// as a call is never also content.
/// </summary>
internal abstract class ToolCallExtractor(ToolCallSink sink)
{
    // The raw text of the call being read, from its marker on, and how many calls the sink had when it began: when the
    // format breaks before any of its calls was sent, that text goes back to the content.
    private readonly StringBuilder _region = new();
    private int _callsAtRegionStart;

    protected ToolCallSink Sink { get; } = sink;

    public void Feed(string text)
    {
        if (text.Length == 0)
            return;
        if (Sink.Failed)
            Sink.AppendContent(text);
        else
            Consume(text, final: false);
    }

    public void Finish()
    {
        if (!Sink.Failed)
            Consume("", final: true);
        Sink.Finish();
    }

    /// <summary>Reads <paramref name="text"/> after what is held; <paramref name="final"/>: nothing more will come.</summary>
    protected abstract void Consume(string text, bool final);

    /// <summary>A call (or a block of calls) begins with <paramref name="raw"/>.</summary>
    protected void BeginRegion(ReadOnlySpan<char> raw)
    {
        _region.Clear();
        _region.Append(raw);
        _callsAtRegionStart = Sink.Calls.Count;
    }

    protected void AppendRegion(char c) => _region.Append(c);

    protected void AppendRegion(ReadOnlySpan<char> raw) => _region.Append(raw);

    /// <summary>The format broke: the region (when none of its calls was sent) and the unread text become content.</summary>
    protected void FailRegion(ReadOnlySpan<char> unread)
    {
        var literal = new StringBuilder();
        if (Sink.Calls.Count == _callsAtRegionStart)
            literal.Append(_region);
        literal.Append(unread);
        Sink.Fail(literal.ToString());
    }
}

/// <summary>
/// Copies what a <see cref="JsonValueScanner"/> writes for a call's arguments into the sink, once the call exists there
/// (its name may come after its arguments in the model's JSON).
/// </summary>
internal sealed class ArgumentsWriter(ToolCallSink sink)
{
    public StringBuilder Buffer { get; } = new();

    /// <summary>The call's index in the sink; -1 until its name is known.</summary>
    public int Index { get; private set; } = -1;

    public void Start(string name)
    {
        Index = sink.StartCall(name);
        Flush();
    }

    public void Flush()
    {
        if (Index < 0 || Buffer.Length == 0)
            return;
        foreach (var chunk in Buffer.GetChunks())
            sink.AppendArguments(Index, chunk.Span);
        Buffer.Clear();
    }
}
