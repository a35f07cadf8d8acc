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
    private static readonly string[] ArgumentKeys = ["parameters", "arguments"];

    private enum State
    {
        Start,
        Call,
        AfterCall,
        Text,
    }

    private State _state;
    private JsonCallReader? _reader;

    protected override void Consume(string input, bool final)
    {
        int pos = 0;
        while (true)
        {
            switch (_state)
            {
                case State.Start:
                    if (OpensWithCalls(input, ref pos, PythonTag, '{', final) is not { } calls)
                        return;
                    if (!calls)
                    {
                        _state = State.Text;
                        continue;
                    }
                    _reader = new JsonCallReader(Sink, ArgumentKeys);
                    _state = State.Call;
                    continue;

                case State.Call:
                    if (!ReadToEnd(_reader!, input, ref pos, final))
                        return;
                    Sink.EndCall();
                    _state = State.AfterCall;
                    continue;

                case State.AfterCall:
                {
                    // Whitespace after a call is not content (the sink drops it), so it is read, not held.
                    var after = SkipWhitespace(input, ref pos);
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
                    Sink.AppendContent(input.AsSpan(pos));
                    return;
            }
        }
    }
}
