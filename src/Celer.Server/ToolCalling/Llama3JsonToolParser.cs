namespace Celer.Server.ToolCalling;

/// <summary>
/// vLLM's <c>llama3_json</c> parser: Llama 3.1–3.3 answer a tool call with JSON alone,
/// <c>{"name": "f", "parameters": {...}}</c> (or <c>"arguments"</c>), several separated by <c>;</c>, sometimes after the
/// <c>&lt;|python_tag|&gt;</c> token. The output is read as calls only when it begins with one (vLLM streams it that way;
/// its non-streamed answer also looked for JSON further in), and text after the calls is content. An object without a
/// name, or JSON that does not parse, makes the whole output content.
/// </summary>
internal sealed class Llama3JsonToolParser : IToolParser
{
    public string Name => ToolParserRegistry.Llama3Json;
    public bool KeepsSpecialTokens => false;
    public string NewToolCallId() => ToolCallIds.Random();
    public ToolCallExtractor CreateExtractor(ToolCallSink sink, ToolCallContext context) => new Llama3JsonToolCallExtractor(sink);
}

/// <summary>Reads Llama 3's JSON calls; see <see cref="Llama3JsonToolParser"/>.</summary>
internal sealed class Llama3JsonToolCallExtractor(ToolCallSink sink) : ToolCallExtractor(sink)
{
    private const string PythonTag = "<|python_tag|>";
    // Whitespace held before deciding whether the output is a call; an answer that opens with more is plain text.
    private const int MaxLeadingText = 4096;
    private static readonly string[] ArgumentKeys = ["parameters", "arguments"];

    private enum State
    {
        Start,
        Call,
        AfterCall,
        Text,
    }

    private State _state;
    private string _held = "";
    private JsonCallReader? _reader;

    protected override void Consume(string text, bool final)
    {
        var input = _held + text;
        _held = "";
        int pos = 0;
        while (true)
        {
            var rest = input.AsSpan(pos);
            switch (_state)
            {
                case State.Start:
                {
                    // Leading whitespace, then the python tag or '{' makes calls; anything else is an ordinary answer.
                    var start = rest.TrimStart();
                    if (start.StartsWith(PythonTag, StringComparison.Ordinal))
                        start = start[PythonTag.Length..].TrimStart();
                    if ((start.Length == 0 || (!final && PythonTag.AsSpan().StartsWith(start))) && rest.Length <= MaxLeadingText)
                    {
                        if (final)
                            Sink.AppendContent(rest);
                        else
                            _held = rest.ToString();
                        return;
                    }
                    if (start[0] != '{')
                    {
                        _state = State.Text;
                        continue;
                    }
                    int skipped = rest.Length - start.Length;
                    BeginRegion(rest[..skipped]);
                    pos += skipped;
                    _reader = new JsonCallReader(Sink, ArgumentKeys);
                    _state = State.Call;
                    continue;
                }

                case State.Call:
                    while (pos < input.Length)
                    {
                        char c = input[pos++];
                        AppendRegion(c);
                        var status = _reader!.Feed(c);
                        if (status == ScanStatus.Error)
                        {
                            FailRegion(input.AsSpan(pos));
                            return;
                        }
                        if (status == ScanStatus.Complete)
                        {
                            Sink.EndCall();
                            _state = State.AfterCall;
                            break;
                        }
                    }
                    if (_state == State.Call)
                    {
                        if (final)
                            FailRegion("");
                        return;
                    }
                    continue;

                case State.AfterCall:
                {
                    // Whitespace after a call is not content (the sink drops it), so it is read, not held.
                    var after = rest.TrimStart();
                    pos += rest.Length - after.Length;
                    if (after.Length == 0)
                        return;
                    if (after[0] == ';')
                    {
                        pos += 1;
                        BeginRegion(";");
                        _reader = new JsonCallReader(Sink, ArgumentKeys);
                        _state = State.Call;
                        continue;
                    }
                    _state = State.Text;
                    continue;
                }

                case State.Text:
                    Sink.AppendContent(rest);
                    return;
            }
        }
    }
}
