namespace Celer.Server.ToolCalling;

/// <summary>
/// vLLM's <c>mistral</c> parser: Mistral models write <c>[TOOL_CALLS]</c> (a special token) and then the calls, as a JSON
/// array <c>[{"name": "f", "arguments": {...}}]</c> (Mistral 7B v0.3, Mistral Nemo, Small 3.x) or, with tekken v11
/// tokenizers, as <c>f[ARGS]{...}</c> after each <c>[TOOL_CALLS]</c>. Text before the marker is content. The marker must be
/// one token of the vocabulary (vLLM refuses the parser otherwise), and a request offered tools decodes with special
/// tokens kept so it stays in the text. Call ids are nine letters and digits, the only ids Mistral's templates accept back.
/// </summary>
internal sealed class MistralToolParser : IToolParser
{
    public const string Marker = "[TOOL_CALLS]";

    public string Name => ToolParserRegistry.Mistral;
    public bool KeepsSpecialTokens => true;
    public string NewToolCallId() => ToolCallIds.Mistral();
    public ToolCallExtractor CreateExtractor(ToolCallSink sink, ToolCallContext context) => new MistralToolCallExtractor(sink);
}

/// <summary>Reads Mistral's <c>[TOOL_CALLS]</c> calls; see <see cref="MistralToolParser"/>.</summary>
internal sealed class MistralToolCallExtractor(ToolCallSink sink) : ToolCallExtractor(sink)
{
    private const string Marker = MistralToolParser.Marker;
    private const string ArgsMarker = "[ARGS]";
    private static readonly string[] Markers = [Marker];
    private static readonly string[] ArgumentKeys = ["arguments"];

    private enum State
    {
        Text,
        AfterMarker,
        Array,
        Name,
        Arguments,
    }

    private State _state;
    private JsonCallArrayReader? _array;
    private JsonValueScanner? _arguments;
    private ArgumentsWriter? _writer;

    protected override void Consume(string input, bool final)
    {
        int pos = 0;
        while (true)
        {
            var rest = input.AsSpan(pos);
            switch (_state)
            {
                case State.Text:
                    if (ContentUntil(input, ref pos, Markers, final) < 0)
                        return;
                    _state = State.AfterMarker;
                    continue;

                case State.AfterMarker:
                {
                    var after = SkipWhitespace(input, ref pos);
                    if (after.Length == 0)
                    {
                        if (final)
                            FailRegion("");
                        return;
                    }
                    if (after[0] == '[')
                    {
                        _array = new JsonCallArrayReader(Sink, ArgumentKeys);
                        _state = State.Array;
                    }
                    else
                    {
                        _state = State.Name;
                    }
                    continue;
                }

                case State.Array:
                    if (!ReadToEnd(_array!, input, ref pos, final))
                        return;
                    _state = State.Text;
                    continue;

                case State.Name:
                {
                    // tekken v11: the function's name, then [ARGS] and its arguments as JSON.
                    int at = rest.IndexOf(ArgsMarker, StringComparison.Ordinal);
                    if (at < 0)
                    {
                        // Only name characters so far, but for a tail that may begin [ARGS].
                        int partial = final ? 0 : MarkerText.PartialSuffix(rest, ArgsMarker);
                        if (final || rest.Length > MaxNameLength || rest[..^partial].IndexOfAnyExcept(NameCharacters) >= 0)
                            FailRegion(rest);
                        else
                            Hold(rest);
                        return;
                    }
                    var name = rest[..at];
                    if (name.Length == 0 || name.Length > MaxNameLength || name.IndexOfAnyExcept(NameCharacters) >= 0)
                    {
                        FailRegion(rest);
                        return;
                    }
                    AppendRegion(rest[..(at + ArgsMarker.Length)]);
                    pos += at + ArgsMarker.Length;
                    _writer = new ArgumentsWriter(Sink);
                    _writer.Start(name.ToString());
                    _arguments = new JsonValueScanner(_writer.Buffer);
                    _state = State.Arguments;
                    continue;
                }

                case State.Arguments:
                    while (pos < input.Length)
                    {
                        char c = input[pos++];
                        var status = _arguments!.Feed(c);
                        _writer!.Flush();
                        if (status == ScanStatus.Error)
                        {
                            FailRegion(input.AsSpan(pos));
                            return;
                        }
                        if (status is ScanStatus.Complete or ScanStatus.CompleteBefore)
                        {
                            if (status == ScanStatus.CompleteBefore)
                                pos--;
                            Sink.EndCall();
                            _state = State.Text;
                            break;
                        }
                    }
                    if (_state == State.Arguments)
                    {
                        if (final)
                        {
                            if (_arguments!.Finish())
                            {
                                _writer!.Flush();
                                Sink.EndCall();
                            }
                            else
                            {
                                FailRegion("");
                            }
                        }
                        return;
                    }
                    continue;
            }
        }
    }

    // Function names: letters, digits, '_', '-' and '.' (OpenAI allows a-z, A-Z, 0-9, '_' and '-').
    private static readonly System.Buffers.SearchValues<char> NameCharacters =
        System.Buffers.SearchValues.Create("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-.");
}
