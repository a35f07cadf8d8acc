namespace Celer.Server.ToolCalling;

/// <summary>
/// Reads harmony messages into calls and content; see <see cref="OpenAIToolParser"/>. It reads gpt-oss's output as the
/// model wrote it, and also what <c>openai_gptoss</c>'s reasoning stream leaves of it (the answer as plain text, calls
/// still as messages). Arguments are read as JSON and written the way vLLM's <c>json.dumps(json.loads(...))</c> writes
/// them; arguments that are not JSON stay as written from where they stop being JSON (vLLM keeps the text of a call whose
/// JSON does not parse). The last call usually ends with the output, its <c>&lt;|call|&gt;</c> being an end-of-sequence
/// token: it is complete when its JSON is, and a call cut off inside its JSON (max_tokens) breaks the format, as in the
/// other parsers: the finished answer is then the text as written.
/// </summary>
internal sealed class HarmonyToolCallExtractor : ToolCallExtractor, IHarmonyListener
{
    private enum Kind
    {
        Content,
        Hidden,
        Call,
    }

    private readonly HarmonyMessageReader _reader;
    private Kind _kind = Kind.Content;
    private bool _wroteContent;
    private bool _separatorPending;
    private ArgumentsWriter? _writer;
    private JsonValueScanner? _scanner;
    private bool _argumentsComplete;
    private bool _argumentsRaw;

    public HarmonyToolCallExtractor(ToolCallSink sink) : base(sink) => _reader = new HarmonyMessageReader(this);

    protected override void Consume(string input, bool final)
    {
        _reader.Push(input);
        if (final)
            _reader.Finish();
    }

    public void OnText(ReadOnlySpan<char> text) => AppendContent(text);

    public void OnMessageStart(HarmonyHeader header, string rawHeader)
    {
        if (header.FunctionName is { } name)
        {
            _kind = Kind.Call;
            BeginRegion(rawHeader);
            _writer = new ArgumentsWriter(Sink);
            _writer.Start(name);
            _scanner = header.ArgumentsAreJson ? new JsonValueScanner(_writer.Buffer) : null;
            (_argumentsComplete, _argumentsRaw) = (false, _scanner is null);
            return;
        }
        // Analysis is reasoning: not content, whether or not a reasoning parser took it out before.
        _kind = header.Channel == HarmonyHeader.Analysis ? Kind.Hidden : Kind.Content;
        // vLLM joins the texts of several answer messages with a newline.
        _separatorPending = _kind == Kind.Content && _wroteContent;
    }

    public void OnBody(ReadOnlySpan<char> text)
    {
        if (Sink.Failed)
        {
            Sink.AppendContent(text);
            return;
        }
        switch (_kind)
        {
            case Kind.Content:
                AppendContent(text);
                return;
            case Kind.Call:
                AppendRegion(text);
                AppendArguments(text);
                return;
        }
    }

    public void OnMessageEnd(string? terminator)
    {
        if (_kind == Kind.Call && !Sink.Failed)
        {
            if (!_argumentsRaw && !_argumentsComplete)
            {
                // A top-level number ends only here; anything else unfinished is a call the output was cut inside.
                if (_scanner!.Finish())
                {
                    _writer!.Flush();
                }
                else if (terminator is null)
                {
                    FailRegion("");
                    _kind = Kind.Content;
                    return;
                }
            }
            Sink.EndCall();
        }
        _kind = Kind.Content;
    }

    private void AppendContent(ReadOnlySpan<char> text)
    {
        if (text.Length == 0)
            return;
        if (_separatorPending)
        {
            Sink.AppendContent("\n");
            _separatorPending = false;
        }
        Sink.AppendContent(text);
        _wroteContent = true;
    }

    private void AppendArguments(ReadOnlySpan<char> text)
    {
        int i = 0;
        while (!_argumentsRaw && i < text.Length)
        {
            char c = text[i];
            if (_argumentsComplete)
            {
                // Whitespace after the JSON is not part of it; anything else makes the rest text as written.
                if (!char.IsWhiteSpace(c))
                    _argumentsRaw = true;
                else
                    i++;
                continue;
            }
            var status = _scanner!.Feed(c);
            _writer!.Flush();
            switch (status)
            {
                case ScanStatus.Error:
                    _argumentsRaw = true;
                    continue;
                case ScanStatus.Complete:
                    _argumentsComplete = true;
                    break;
                case ScanStatus.CompleteBefore:
                    // The number before c is complete; c itself is read again as what follows the JSON.
                    _argumentsComplete = true;
                    continue;
            }
            i++;
        }
        if (i < text.Length)
            Sink.AppendArguments(_writer!.Index, text[i..]);
    }
}
