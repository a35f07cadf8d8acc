using System.Text;
using System.Text.Json;

namespace Celer.Server.ToolCalling;

/// <summary>
/// Reads one tool call written as a JSON object, <c>{"name": "f", "arguments": {...}}</c>, a character at a time (Hermes,
/// Llama 3.1, Mistral, and the array that <c>tool_choice: "required"</c> asks for, whose key is <c>parameters</c>). The
/// call reaches the sink when its name is complete, its arguments as they come; other keys (<c>"type": "function"</c>)
/// are read and ignored. A call without arguments gets <c>{}</c>; an object without a name is not a call.
/// </summary>
internal sealed class JsonCallReader(ToolCallSink sink, IReadOnlyList<string> argumentKeys) : ICharReader
{
    private enum State
    {
        Start,
        KeyOrEnd,
        Key,
        InKey,
        Colon,
        InValue,
        AfterValue,
        Done,
    }

    private enum Role
    {
        Name,
        Arguments,
        Other,
    }

    private readonly ArgumentsWriter _arguments = new(sink);
    private readonly StringBuilder _text = new();
    private JsonValueScanner _scanner = new(null);
    private State _state;
    private Role _role;
    private bool _hasArguments;

    public string? Name { get; private set; }

    public ScanStatus Feed(char c)
    {
        switch (_state)
        {
            case State.Start:
                if (char.IsWhiteSpace(c))
                    return ScanStatus.NeedMore;
                if (c != '{')
                    return ScanStatus.Error;
                _state = State.KeyOrEnd;
                return ScanStatus.NeedMore;

            case State.KeyOrEnd:
            case State.Key:
                if (char.IsWhiteSpace(c))
                    return ScanStatus.NeedMore;
                if (c == '}' && _state == State.KeyOrEnd)
                    return End();
                if (c != '"')
                    return ScanStatus.Error;
                _text.Clear();
                _scanner = new JsonValueScanner(_text);
                _scanner.Feed(c);
                _state = State.InKey;
                return ScanStatus.NeedMore;

            case State.InKey:
                var keyStatus = _scanner.Feed(c);
                if (keyStatus == ScanStatus.Error)
                    return ScanStatus.Error;
                if (keyStatus == ScanStatus.Complete)
                {
                    var key = DecodeString(_text.ToString());
                    _role = key == "name" && Name is null ? Role.Name
                        : argumentKeys.Contains(key) && !_hasArguments ? Role.Arguments
                        : Role.Other;
                    _state = State.Colon;
                }
                return ScanStatus.NeedMore;

            case State.Colon:
                if (char.IsWhiteSpace(c))
                    return ScanStatus.NeedMore;
                if (c != ':')
                    return ScanStatus.Error;
                _text.Clear();
                _scanner = new JsonValueScanner(_role switch
                {
                    Role.Name => _text,
                    Role.Arguments => _arguments.Buffer,
                    _ => null,
                });
                _hasArguments |= _role == Role.Arguments;
                _state = State.InValue;
                return ScanStatus.NeedMore;

            case State.InValue:
                var status = _scanner.Feed(c);
                if (_role == Role.Arguments)
                    _arguments.Flush();
                switch (status)
                {
                    case ScanStatus.Error:
                        return ScanStatus.Error;
                    case ScanStatus.NeedMore:
                        return ScanStatus.NeedMore;
                }
                if (_role == Role.Name)
                {
                    // The name must be a non-empty string; the call exists from here on.
                    if (_text.Length < 3 || _text[0] != '"' || DecodeString(_text.ToString()) is not { Length: > 0 } name)
                        return ScanStatus.Error;
                    Name = name;
                    _arguments.Start(name);
                }
                _state = State.AfterValue;
                return status == ScanStatus.CompleteBefore ? Feed(c) : ScanStatus.NeedMore;

            case State.AfterValue:
                if (char.IsWhiteSpace(c))
                    return ScanStatus.NeedMore;
                if (c == ',')
                {
                    _state = State.Key;
                    return ScanStatus.NeedMore;
                }
                return c == '}' ? End() : ScanStatus.Error;

            default:
                return ScanStatus.Error;
        }
    }

    private ScanStatus End()
    {
        if (Name is null)
            return ScanStatus.Error;
        if (!_hasArguments)
        {
            _arguments.Buffer.Append("{}");
            _arguments.Flush();
        }
        _state = State.Done;
        return ScanStatus.Complete;
    }

    /// <summary>A JSON string literal's text; null for anything else.</summary>
    internal static string? DecodeString(string json)
    {
        try
        {
            using var document = JsonDocument.Parse(json);
            return document.RootElement.ValueKind == JsonValueKind.String ? document.RootElement.GetString() : null;
        }
        catch (JsonException)
        {
            return null;
        }
    }
}

/// <summary>
/// A JSON array of <see cref="JsonCallReader"/> objects: Mistral's <c>[TOOL_CALLS] [{...}, {...}]</c> and the output that
/// <c>tool_choice: "required"</c> constrains to <c>[{"name": ..., "parameters": ...}]</c>.
/// </summary>
internal sealed class JsonCallArrayReader(ToolCallSink sink, IReadOnlyList<string> argumentKeys) : ICharReader
{
    private enum State
    {
        Start,
        ElementOrEnd,
        Element,
        InElement,
        AfterElement,
        Done,
    }

    private State _state;
    private JsonCallReader? _element;

    public int Count { get; private set; }

    public ScanStatus Feed(char c)
    {
        switch (_state)
        {
            case State.Start:
                if (char.IsWhiteSpace(c))
                    return ScanStatus.NeedMore;
                if (c != '[')
                    return ScanStatus.Error;
                _state = State.ElementOrEnd;
                return ScanStatus.NeedMore;

            case State.ElementOrEnd:
            case State.Element:
                if (char.IsWhiteSpace(c))
                    return ScanStatus.NeedMore;
                if (c == ']' && _state == State.ElementOrEnd)
                {
                    _state = State.Done;
                    return ScanStatus.Complete;
                }
                _element = new JsonCallReader(sink, argumentKeys);
                _state = State.InElement;
                return _element.Feed(c) == ScanStatus.Error ? ScanStatus.Error : ScanStatus.NeedMore;

            case State.InElement:
                var status = _element!.Feed(c);
                if (status == ScanStatus.Error)
                    return ScanStatus.Error;
                if (status == ScanStatus.Complete)
                {
                    Count++;
                    sink.EndCall();
                    _state = State.AfterElement;
                }
                return ScanStatus.NeedMore;

            case State.AfterElement:
                if (char.IsWhiteSpace(c))
                    return ScanStatus.NeedMore;
                if (c == ',')
                {
                    _state = State.Element;
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
}
