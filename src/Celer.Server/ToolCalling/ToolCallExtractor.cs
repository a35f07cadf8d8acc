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
    /// <summary>A function or argument name longer than this is not one.</summary>
    internal const int MaxNameLength = 256;

    // Whitespace held before deciding whether the output is a call (Llama 3, pythonic); an answer that opens with more is plain text.
    private const int MaxLeadingText = 4096;

    // The raw text of the call being read, from its marker on, and how many calls the sink had when it began: when the
    // format breaks before any of its calls was sent, that text goes back to the content.
    private readonly StringBuilder _region = new();
    private int _callsAtRegionStart;
    private string _held = "";

    protected ToolCallSink Sink { get; } = sink;

    public void Feed(string text)
    {
        if (text.Length == 0)
            return;
        if (Sink.Failed)
            Sink.AppendContent(text);
        else
            Read(text, final: false);
    }

    public void Finish()
    {
        if (!Sink.Failed)
            Read("", final: true);
        Sink.Finish();
    }

    private void Read(string text, bool final)
    {
        var input = _held + text;
        _held = "";
        Consume(input, final);
    }

    /// <summary>
    /// Reads <paramref name="input"/>: what <see cref="Hold"/> kept of the last delta, then the new one;
    /// <paramref name="final"/>: nothing more will come.
    /// </summary>
    protected abstract void Consume(string input, bool final);

    /// <summary>Keeps <paramref name="text"/>, unread, for the next delta to settle.</summary>
    protected void Hold(ReadOnlySpan<char> text) => _held = text.ToString();

    /// <summary>A call (or a block of calls) begins with <paramref name="raw"/>.</summary>
    protected void BeginRegion(ReadOnlySpan<char> raw)
    {
        _region.Clear();
        _region.Append(raw);
        _callsAtRegionStart = Sink.Calls.Count;
    }

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

    /// <summary>
    /// Content up to the first of <paramref name="markers"/>, which begins a region: returns which one, with
    /// <paramref name="pos"/> past it, or -1 when there is none, with a tail that may begin one held.
    /// </summary>
    protected int ContentUntil(string input, ref int pos, ReadOnlySpan<string> markers, bool final)
    {
        var rest = input.AsSpan(pos);
        var (at, which) = MarkerText.IndexOfAny(rest, markers);
        if (at < 0)
        {
            int hold = final ? 0 : MarkerText.PartialSuffix(rest, markers);
            Sink.AppendContent(rest[..^hold]);
            Hold(rest[^hold..]);
            return -1;
        }
        Sink.AppendContent(rest[..at]);
        BeginRegion(markers[which]);
        pos += at + markers[which].Length;
        return which;
    }

    /// <summary>
    /// For formats read as calls only when the output begins with them (Llama 3's JSON, the pythonic list): after leading
    /// whitespace and <paramref name="tag"/>, <paramref name="opener"/> makes calls and anything else an ordinary answer.
    /// Returns null while that is undecided (the text is held, or at the end is content), false for an answer, and true
    /// for calls, with the region begun and <paramref name="pos"/> on the opener.
    /// </summary>
    protected bool? OpensWithCalls(string input, ref int pos, string tag, char opener, bool final)
    {
        var rest = input.AsSpan(pos);
        var start = rest.TrimStart();
        if (start.StartsWith(tag, StringComparison.Ordinal))
            start = start[tag.Length..].TrimStart();
        if ((start.Length == 0 || (!final && tag.AsSpan().StartsWith(start))) && rest.Length <= MaxLeadingText)
        {
            if (final)
                Sink.AppendContent(rest);
            else
                Hold(rest);
            return null;
        }
        if (start[0] != opener)
            return false;
        int skipped = rest.Length - start.Length;
        BeginRegion(rest[..skipped]);
        pos += skipped;
        return true;
    }

    /// <summary>
    /// Feeds <paramref name="reader"/> the region's text until it completes: false when the format broke, or the text ran
    /// out first (which breaks it at the end of the output).
    /// </summary>
    protected bool ReadToEnd(ICharReader reader, string input, ref int pos, bool final)
    {
        while (pos < input.Length)
        {
            char c = input[pos++];
            _region.Append(c);
            var status = reader.Feed(c);
            if (status == ScanStatus.Error)
            {
                FailRegion(input.AsSpan(pos));
                return false;
            }
            if (status == ScanStatus.Complete)
                return true;
        }
        if (final)
            FailRegion("");
        return false;
    }

    /// <summary>Skips whitespace between the parts of a call, which is neither call nor content; returns what follows it.</summary>
    protected ReadOnlySpan<char> SkipWhitespace(string input, ref int pos)
    {
        var rest = input.AsSpan(pos);
        var after = rest.TrimStart();
        _region.Append(rest[..(rest.Length - after.Length)]);
        pos += rest.Length - after.Length;
        return after;
    }
}
