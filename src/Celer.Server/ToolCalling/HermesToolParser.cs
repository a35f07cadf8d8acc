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
    private static readonly string[] ArgumentKeys = ["arguments", "parameters"];

    private enum State
    {
        Text,
        Call,
        AfterCall,
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
                case State.Text:
                {
                    int at = rest.IndexOf(Open, StringComparison.Ordinal);
                    if (at < 0)
                    {
                        int hold = final ? 0 : MarkerText.PartialSuffix(rest, Open);
                        Sink.AppendContent(rest[..^hold]);
                        _held = rest[^hold..].ToString();
                        return;
                    }
                    Sink.AppendContent(rest[..at]);
                    pos += at + Open.Length;
                    BeginRegion(Open);
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
                    // Whitespace between the JSON and the closing tag is neither call nor content.
                    var after = rest.TrimStart();
                    pos += rest.Length - after.Length;
                    if (after.StartsWith(Close, StringComparison.Ordinal))
                    {
                        pos += Close.Length;
                        Sink.EndCall();
                        _state = State.Text;
                        continue;
                    }
                    if (after.Length == 0 || Close.AsSpan().StartsWith(after))
                    {
                        // The closing tag has not come (yet): the call is complete without it at the end of the output.
                        if (final)
                            Sink.EndCall();
                        else
                            _held = after.ToString();
                        return;
                    }
                    FailRegion(after);
                    return;
                }
            }
        }
    }
}
