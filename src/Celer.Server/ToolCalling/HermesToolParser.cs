namespace Celer.Server.ToolCalling;

/// <summary>
/// vLLM's <c>hermes</c> parser: Hermes 2 Pro, Qwen2.5 and Qwen3 write each call as
/// <c>&lt;tool_call&gt;\n{"name": "f", "arguments": {...}}\n&lt;/tool_call&gt;</c>, any number of them, with text around.
/// The last call may lack its closing tag (the model stopped there). JSON that does not parse makes the whole output
/// content, as in vLLM.
/// </summary>
internal sealed class HermesToolParser : IToolParser
{
    public string Name => ToolParserRegistry.Hermes;
    public bool KeepsSpecialTokens => false;
    public string NewToolCallId() => ToolCallIds.Random();
    public ToolCallExtractor CreateExtractor(ToolCallSink sink, ToolCallContext context) => new HermesToolCallExtractor(sink);
}

/// <summary>Reads Hermes' <c>&lt;tool_call&gt;</c> blocks; see <see cref="HermesToolParser"/>.</summary>
internal sealed class HermesToolCallExtractor(ToolCallSink sink) : ToolCallExtractor(sink)
{
    private const string Open = "<tool_call>";
    private const string Close = "</tool_call>";
    private static readonly string[] Markers = [Open];
    private static readonly string[] ArgumentKeys = ["arguments", "parameters"];

    private enum State
    {
        Text,
        Call,
        AfterCall,
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
                case State.Text:
                    if (ContentUntil(input, ref pos, Markers, final) < 0)
                        return;
                    _reader = new JsonCallReader(Sink, ArgumentKeys);
                    _state = State.Call;
                    continue;

                case State.Call:
                    if (!ReadToEnd(_reader!, input, ref pos, final))
                        return;
                    _state = State.AfterCall;
                    continue;

                case State.AfterCall:
                {
                    // Whitespace between the JSON and the closing tag is neither call nor content.
                    var after = SkipWhitespace(input, ref pos);
                    if (after.StartsWith(Close, StringComparison.Ordinal))
                    {
                        pos += Close.Length;
                        Sink.EndCall();
                        _state = State.Text;
                        continue;
                    }
                    if (Close.AsSpan().StartsWith(after))
                    {
                        // The closing tag has not come (yet): the call is complete without it at the end of the output.
                        if (final)
                            Sink.EndCall();
                        else
                            Hold(after);
                        return;
                    }
                    FailRegion(after);
                    return;
                }
            }
        }
    }
}
