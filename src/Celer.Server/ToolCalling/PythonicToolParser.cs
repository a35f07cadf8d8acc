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

    private enum State
    {
        Start,
        List,
        AfterList,
        Text,
    }

    private State _state;
    private PythonCallListReader? _list;

    protected override void Consume(string input, bool final)
    {
        int pos = 0;
        while (true)
        {
            switch (_state)
            {
                case State.Start:
                    if (OpensWithCalls(input, ref pos, PythonStart, '[', final) is not { } calls)
                        return;
                    if (!calls)
                    {
                        _state = State.Text;
                        continue;
                    }
                    _list = new PythonCallListReader(Sink);
                    _state = State.List;
                    continue;

                case State.List:
                    if (!ReadToEnd(_list!, input, ref pos, final))
                        return;
                    _state = State.AfterList;
                    continue;

                case State.AfterList:
                {
                    // Whitespace after the list is not content (the sink drops it), so it is read, not held.
                    var after = SkipWhitespace(input, ref pos);
                    if (after.StartsWith(PythonEnd, StringComparison.Ordinal))
                    {
                        pos += PythonEnd.Length;
                    }
                    else if (!final && PythonEnd.AsSpan().StartsWith(after))
                    {
                        Hold(after);
                        return;
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

/// <summary>
/// <c>[f(a=1, b="x"), g()]</c> read a character at a time: each call reaches the sink when its name and <c>(</c> are read,
/// its arguments as a JSON object that grows with each value.
/// </summary>
internal sealed class PythonCallListReader(ToolCallSink sink) : ICharReader
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

    private readonly System.Text.StringBuilder _name = new();
    private State _state;
    private ArgumentsWriter? _arguments;
    private PythonValueScanner? _value;
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
                return BeginName(c, State.Name);

            case State.Name:
            case State.ArgumentName:
                if (IsNamePart(c))
                {
                    if (_name.Length == ToolCallExtractor.MaxNameLength)
                        return ScanStatus.Error;
                    _name.Append(c);
                    return ScanStatus.NeedMore;
                }
                _state = _state == State.Name ? State.BeforeParen : State.BeforeEquals;
                return Feed(c);

            case State.BeforeParen:
                if (char.IsWhiteSpace(c))
                    return ScanStatus.NeedMore;
                if (c != '(')
                    return ScanStatus.Error;
                _arguments = new ArgumentsWriter(sink);
                _arguments.StartObject(_name.ToString());
                _state = State.ArgumentOrEnd;
                return ScanStatus.NeedMore;

            case State.ArgumentOrEnd:
                if (char.IsWhiteSpace(c))
                    return ScanStatus.NeedMore;
                if (c == ')')
                    return EndCall();
                return BeginName(c, State.ArgumentName);

            case State.BeforeEquals:
                if (char.IsWhiteSpace(c))
                    return ScanStatus.NeedMore;
                if (c != '=')
                    return ScanStatus.Error;
                _arguments!.Key(_name.ToString());
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

    private ScanStatus BeginName(char c, State next)
    {
        if (!IsNameStart(c))
            return ScanStatus.Error;
        _name.Clear().Append(c);
        _state = next;
        return ScanStatus.NeedMore;
    }

    private ScanStatus EndCall()
    {
        _arguments!.EndObject();
        _calls++;
        _state = State.AfterCall;
        return ScanStatus.NeedMore;
    }

    private static bool IsNameStart(char c) => char.IsAsciiLetter(c) || c == '_';

    private static bool IsNamePart(char c) => char.IsAsciiLetterOrDigit(c) || c == '_';
}
