namespace Celer.Server.ToolCalling;

/// <summary>
/// vLLM's <c>pythonic</c> parser: Llama 3.2, Llama 4 and ToolACE-style models answer a tool call with a Python list of
/// calls, <c>[get_weather(city="Paris"), get_time(tz='UTC')]</c>, keyword arguments with literal values. The output is
/// read as calls only when it begins with <c>[</c> (Llama 4 may wrap the list in <c>&lt;|python_start|&gt;</c> …
/// <c>&lt;|python_end|&gt;</c>); the arguments become the JSON object <c>json.dumps</c> writes for them. A list that is not
/// all calls (<c>[1, 2]</c>), a positional argument or a value that is not a literal makes the whole output content.
/// </summary>
internal sealed class PythonicToolParser : IToolParser
{
    public string Name => ToolParserRegistry.Pythonic;
    public bool KeepsSpecialTokens => false;
    public string NewToolCallId() => ToolCallIds.Random();
    public ToolCallExtractor CreateExtractor(ToolCallSink sink, ToolCallContext context) => new PythonicToolCallExtractor(sink);
}

/// <summary>Reads a pythonic call list; see <see cref="PythonicToolParser"/>.</summary>
internal sealed class PythonicToolCallExtractor(ToolCallSink sink) : ToolCallExtractor(sink)
{
    private const string PythonStart = "<|python_start|>";
    private const string PythonEnd = "<|python_end|>";
    // Whitespace held before deciding whether the output is a call list; an answer that opens with more is plain text.
    private const int MaxLeadingText = 4096;

    private enum State
    {
        Start,
        List,
        AfterList,
        Text,
    }

    private State _state;
    private string _held = "";
    private PythonCallListReader? _list;

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
                    var start = rest.TrimStart();
                    if (start.StartsWith(PythonStart, StringComparison.Ordinal))
                        start = start[PythonStart.Length..].TrimStart();
                    if ((start.Length == 0 || (!final && PythonStart.AsSpan().StartsWith(start))) && rest.Length <= MaxLeadingText)
                    {
                        if (final)
                            Sink.AppendContent(rest);
                        else
                            _held = rest.ToString();
                        return;
                    }
                    if (start[0] != '[')
                    {
                        _state = State.Text;
                        continue;
                    }
                    int skipped = rest.Length - start.Length;
                    BeginRegion(rest[..skipped]);
                    pos += skipped;
                    _list = new PythonCallListReader(Sink);
                    _state = State.List;
                    continue;
                }

                case State.List:
                    while (pos < input.Length)
                    {
                        char c = input[pos++];
                        AppendRegion(c);
                        var status = _list!.Feed(c);
                        if (status == ScanStatus.Error)
                        {
                            FailRegion(input.AsSpan(pos));
                            return;
                        }
                        if (status == ScanStatus.Complete)
                        {
                            _state = State.AfterList;
                            break;
                        }
                    }
                    if (_state == State.List)
                    {
                        if (final)
                            FailRegion("");
                        return;
                    }
                    continue;

                case State.AfterList:
                {
                    // Whitespace after the list is not content (the sink drops it), so it is read, not held.
                    var after = rest.TrimStart();
                    pos += rest.Length - after.Length;
                    if (after.StartsWith(PythonEnd, StringComparison.Ordinal))
                    {
                        pos += PythonEnd.Length;
                        _state = State.Text;
                        continue;
                    }
                    if (!final && (after.Length == 0 || PythonEnd.AsSpan().StartsWith(after)))
                    {
                        _held = after.ToString();
                        return;
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

/// <summary>
/// <c>[f(a=1, b="x"), g()]</c> read a character at a time: each call reaches the sink when its name and <c>(</c> are read,
/// its arguments as a JSON object that grows with each value.
/// </summary>
internal sealed class PythonCallListReader(ToolCallSink sink)
{
    private enum State
    {
        Open,
        CallOrEnd,
        Name,
        BeforeParen,
        ArgumentOrEnd,
        ArgumentName,
        BeforeEquals,
        Value,
        AfterValue,
        AfterCall,
        Done,
    }

    // A name longer than this is not a function the request offered.
    private const int MaxNameLength = 256;

    private readonly System.Text.StringBuilder _name = new();
    private State _state;
    private ArgumentsWriter? _arguments;
    private PythonValueScanner? _value;
    private bool _firstArgument;
    private int _calls;

    public ScanStatus Feed(char c)
    {
        switch (_state)
        {
            case State.Open:
                if (c != '[')
                    return ScanStatus.Error;
                _state = State.CallOrEnd;
                return ScanStatus.NeedMore;

            case State.CallOrEnd:
                if (char.IsWhiteSpace(c))
                    return ScanStatus.NeedMore;
                // An empty list is not a tool call; a trailing comma before ']' is Python.
                if (c == ']' && _calls > 0)
                {
                    _state = State.Done;
                    return ScanStatus.Complete;
                }
                if (!IsNameStart(c))
                    return ScanStatus.Error;
                _name.Clear().Append(c);
                _state = State.Name;
                return ScanStatus.NeedMore;

            case State.Name:
                if (IsNamePart(c))
                {
                    if (_name.Length == MaxNameLength)
                        return ScanStatus.Error;
                    _name.Append(c);
                    return ScanStatus.NeedMore;
                }
                _state = State.BeforeParen;
                return Feed(c);

            case State.BeforeParen:
                if (char.IsWhiteSpace(c))
                    return ScanStatus.NeedMore;
                if (c != '(')
                    return ScanStatus.Error;
                _arguments = new ArgumentsWriter(sink);
                _arguments.Start(_name.ToString());
                _arguments.Buffer.Append('{');
                _arguments.Flush();
                _firstArgument = true;
                _state = State.ArgumentOrEnd;
                return ScanStatus.NeedMore;

            case State.ArgumentOrEnd:
                if (char.IsWhiteSpace(c))
                    return ScanStatus.NeedMore;
                if (c == ')')
                    return EndCall();
                if (!IsNameStart(c))
                    return ScanStatus.Error;
                _name.Clear().Append(c);
                _state = State.ArgumentName;
                return ScanStatus.NeedMore;

            case State.ArgumentName:
                if (IsNamePart(c))
                {
                    if (_name.Length == MaxNameLength)
                        return ScanStatus.Error;
                    _name.Append(c);
                    return ScanStatus.NeedMore;
                }
                _state = State.BeforeEquals;
                return Feed(c);

            case State.BeforeEquals:
                if (char.IsWhiteSpace(c))
                    return ScanStatus.NeedMore;
                if (c != '=')
                    return ScanStatus.Error;
                _arguments!.Buffer.Append(_firstArgument ? "" : ", ").Append(JsonText.Quote(_name.ToString())).Append(": ");
                _arguments.Flush();
                _firstArgument = false;
                _value = new PythonValueScanner(_arguments.Buffer);
                _state = State.Value;
                return ScanStatus.NeedMore;

            case State.Value:
                var status = _value!.Feed(c);
                _arguments!.Flush();
                switch (status)
                {
                    case ScanStatus.Error:
                        return ScanStatus.Error;
                    case ScanStatus.NeedMore:
                        return ScanStatus.NeedMore;
                }
                _state = State.AfterValue;
                return status == ScanStatus.CompleteBefore ? Feed(c) : ScanStatus.NeedMore;

            case State.AfterValue:
                if (char.IsWhiteSpace(c))
                    return ScanStatus.NeedMore;
                if (c == ',')
                {
                    _state = State.ArgumentOrEnd;
                    return ScanStatus.NeedMore;
                }
                return c == ')' ? EndCall() : ScanStatus.Error;

            case State.AfterCall:
                if (char.IsWhiteSpace(c))
                    return ScanStatus.NeedMore;
                if (c == ',')
                {
                    _state = State.CallOrEnd;
                    return ScanStatus.NeedMore;
                }
                if (c != ']')
                    return ScanStatus.Error;
                _state = State.Done;
                return ScanStatus.Complete;

            default:
                return ScanStatus.Error;
        }
    }

    private ScanStatus EndCall()
    {
        _arguments!.Buffer.Append('}');
        _arguments.Flush();
        sink.EndCall();
        _calls++;
        _state = State.AfterCall;
        return ScanStatus.NeedMore;
    }

    private static bool IsNameStart(char c) => char.IsAsciiLetter(c) || c == '_';

    private static bool IsNamePart(char c) => char.IsAsciiLetterOrDigit(c) || c == '_';
}
