using System.Globalization;
using System.Numerics;
using System.Text;
using System.Text.Json.Nodes;

namespace Celer.Server.ToolCalling;

/// <summary>
/// vLLM's <c>qwen3_xml</c> parser (also registered as <c>qwen3_coder</c>, vLLM's other parser for the same format):
/// Qwen3-Coder and Qwen3.5 write calls as XML-like blocks,
/// <code>
/// &lt;tool_call&gt;
/// &lt;function=get_weather&gt;
/// &lt;parameter=city&gt;
/// Paris
/// &lt;/parameter&gt;
/// &lt;/function&gt;
/// &lt;/tool_call&gt;
/// </code>
/// Each value is the text between the tags less one newline at each end, typed by the function's parameter schema in the
/// request as vLLM types it: strings stay text, integer and number types parse (an integral float becomes an int), a
/// boolean is <c>true</c> only for "true", objects and arrays parse as JSON or else as a Python literal, and <c>null</c>
/// is null whatever the type; a value that does not parse stays a string. String values stream as they are written. A
/// call cut off by max_tokens keeps what it has, as in vLLM; a block that is not a function makes the output content.
/// </summary>
internal sealed class Qwen3XmlToolParser(string name) : IToolParser
{
    public string Name => name;
    public bool KeepsSpecialTokens => false;
    public string NewToolCallId() => ToolCallIds.Random();
    public ToolCallExtractor CreateExtractor(ToolCallSink sink, ToolCallContext context) => new Qwen3XmlToolCallExtractor(sink, context);
}

/// <summary>Reads Qwen3's XML calls; see <see cref="Qwen3XmlToolParser"/>.</summary>
internal sealed class Qwen3XmlToolCallExtractor(ToolCallSink sink, ToolCallContext context) : ToolCallExtractor(sink)
{
    private const string ToolCallOpen = "<tool_call>";
    private const string ToolCallClose = "</tool_call>";
    private const string FunctionOpen = "<function=";
    private const string FunctionClose = "</function>";
    private const string ParameterOpen = "<parameter=";
    private const string ParameterClose = "</parameter>";

    private static readonly string[] TextMarkers = [ToolCallOpen, FunctionOpen];
    private static readonly string[] FunctionMarkers = [ParameterOpen, FunctionClose, ToolCallClose];
    private static readonly string[] BlockMarkers = [FunctionOpen, ToolCallClose];
    // A value ends at its closing tag, or (the model forgot it) where the next parameter or the function ends.
    private static readonly string[] ValueEnds = [ParameterClose, ParameterOpen, FunctionClose, ToolCallClose];

    private enum State
    {
        Text,
        Block,
        FunctionName,
        Function,
        ParameterName,
        Value,
    }

    private enum ValueType
    {
        String,
        Integer,
        Number,
        Boolean,
        Json,
        Other,
    }

    private readonly StringBuilder _raw = new();
    private State _state;
    private bool _wrapped;
    private int _functionsInBlock;
    private ArgumentsWriter? _arguments;
    private JsonObject? _properties;
    private ValueType _type;
    private bool _quoteOpen;
    private int _emitted;

    protected override void Consume(string input, bool final)
    {
        int pos = 0;
        while (true)
        {
            var rest = input.AsSpan(pos);
            switch (_state)
            {
                case State.Text:
                {
                    int which = ContentUntil(input, ref pos, TextMarkers, final);
                    if (which < 0)
                        return;
                    _wrapped = which == 0;
                    _functionsInBlock = 0;
                    _state = _wrapped ? State.Block : State.FunctionName;
                    continue;
                }

                case State.Block:
                {
                    // Whitespace between the tags is neither call nor content: read, not held.
                    var after = SkipWhitespace(input, ref pos);
                    if (after.StartsWith(FunctionOpen, StringComparison.Ordinal))
                    {
                        AppendRegion(FunctionOpen);
                        pos += FunctionOpen.Length;
                        _state = State.FunctionName;
                        continue;
                    }
                    if (after.StartsWith(ToolCallClose, StringComparison.Ordinal) && _functionsInBlock > 0)
                    {
                        pos += ToolCallClose.Length;
                        _state = State.Text;
                        continue;
                    }
                    if (!after.StartsWith(ToolCallClose, StringComparison.Ordinal) && MarkerText.MayBegin(after, BlockMarkers))
                    {
                        // A block cut off after its last function is complete; one with none is not a call.
                        if (!final)
                            Hold(after);
                        else if (_functionsInBlock == 0)
                            FailRegion(after);
                        return;
                    }
                    FailRegion(after);
                    return;
                }

                case State.FunctionName:
                case State.ParameterName:
                {
                    int gt = rest.IndexOf('>');
                    var nameText = (gt < 0 ? rest : rest[..gt]).Trim();
                    if (gt < 0 || nameText.Length == 0 || nameText.Length > MaxNameLength || nameText.IndexOfAny('<', '\n') >= 0)
                    {
                        // Whitespace around the name is trimmed once the tag closes, so a newline may still come before '>'.
                        if (gt < 0 && !final && rest.Length <= MaxNameLength && rest.IndexOf('<') < 0)
                            Hold(rest);
                        else
                            FailRegion(rest);
                        return;
                    }
                    var name = nameText.ToString();
                    pos += gt + 1;
                    if (_state == State.FunctionName)
                    {
                        AppendRegion(rest[..(gt + 1)]);
                        _arguments = new ArgumentsWriter(Sink);
                        _arguments.StartObject(name);
                        _properties = context.ParameterProperties(name);
                        _functionsInBlock++;
                        _state = State.Function;
                    }
                    else
                    {
                        BeginValue(name);
                        _state = State.Value;
                    }
                    continue;
                }

                case State.Function:
                {
                    var after = SkipWhitespace(input, ref pos);
                    if (after.StartsWith(ParameterOpen, StringComparison.Ordinal))
                    {
                        pos += ParameterOpen.Length;
                        _state = State.ParameterName;
                        continue;
                    }
                    if (after.StartsWith(FunctionClose, StringComparison.Ordinal))
                    {
                        pos += FunctionClose.Length;
                        _arguments!.EndObject();
                        _state = _wrapped ? State.Block : State.Text;
                        continue;
                    }
                    if (after.StartsWith(ToolCallClose, StringComparison.Ordinal) && _wrapped)
                    {
                        _arguments!.EndObject();
                        _state = State.Block;
                        continue;
                    }
                    if (MarkerText.MayBegin(after, FunctionMarkers))
                    {
                        // A function cut off by the end of the output keeps the parameters it has.
                        if (final)
                            _arguments!.EndObject();
                        else
                            Hold(after);
                        return;
                    }
                    FailRegion(after);
                    return;
                }

                case State.Value:
                {
                    (int at, int which) = MarkerText.IndexOfAny(rest, ValueEnds);
                    if (at >= 0)
                    {
                        _raw.Append(rest[..at]);
                        EndValue();
                        pos += at + (which == 0 ? ParameterClose.Length : 0);
                        _state = State.Function;
                        continue;
                    }
                    int hold = final ? 0 : MarkerText.PartialSuffix(rest, ValueEnds);
                    _raw.Append(rest[..^hold]);
                    if (final)
                    {
                        EndValue();
                        _arguments!.EndObject();
                        return;
                    }
                    StreamValue();
                    Hold(rest[^hold..]);
                    return;
                }
            }
        }
    }

    private void BeginValue(string name)
    {
        _type = TypeOf(name);
        _raw.Clear();
        _quoteOpen = false;
        _emitted = 0;
        _arguments!.Key(name);
    }

    /// <summary>
    /// A string value streams as it comes, less the newline that may be the one before the closing tag, and not before it
    /// is clear that the value is not "null" (which is null, not a string).
    /// </summary>
    private void StreamValue()
    {
        if (_type != ValueType.String || _raw.Length == 0)
            return;
        int lead = _raw[0] == '\n' ? 1 : 0;
        int end = _raw.Length > lead && _raw[^1] == '\n' ? _raw.Length - 1 : _raw.Length;
        if (!_quoteOpen)
        {
            if (end - lead <= 4 && "null".StartsWith(_raw.ToString(lead, end - lead), StringComparison.OrdinalIgnoreCase))
                return;
            _arguments!.Buffer.Append('"');
            _quoteOpen = true;
        }
        for (int i = lead + _emitted; i < end; i++)
            JsonText.AppendEscaped(_arguments!.Buffer, _raw[i]);
        _emitted = end - lead;
        _arguments!.Flush();
    }

    private void EndValue()
    {
        int lead = _raw.Length > 0 && _raw[0] == '\n' ? 1 : 0;
        int end = _raw.Length > lead && _raw[^1] == '\n' ? _raw.Length - 1 : _raw.Length;
        var value = _raw.ToString(lead, end - lead);
        var buffer = _arguments!.Buffer;
        if (_type == ValueType.String)
        {
            if (!_quoteOpen)
            {
                if (value.Equals("null", StringComparison.OrdinalIgnoreCase))
                {
                    buffer.Append("null");
                    _arguments.Flush();
                    return;
                }
                buffer.Append('"');
            }
            JsonText.AppendEscaped(buffer, value.AsSpan(_emitted));
            buffer.Append('"');
        }
        else
        {
            buffer.Append(Convert(value, _type));
        }
        _arguments.Flush();
    }

    private ValueType TypeOf(string parameter)
    {
        // vLLM: a parameter the schema does not describe is a string; one it describes without a type too.
        if (_properties is null || !_properties.TryGetPropertyValue(parameter, out var schema))
            return ValueType.String;
        var typeNode = (schema as JsonObject)?["type"];
        string? type = typeNode switch
        {
            JsonValue value when value.TryGetValue(out string? single) => single,
            // ["integer", "null"]: the type that is not null.
            JsonArray many => many.Select(t => t is JsonValue v && v.TryGetValue(out string? s) ? s : null).FirstOrDefault(s => s is not null and not "null"),
            _ => null,
        };
        if (type is null)
            return typeNode is null ? ValueType.String : ValueType.Other;
        type = type.Trim().ToLowerInvariant();
        if (type is "string" or "str" or "text" or "varchar" or "char" or "enum")
            return ValueType.String;
        if (type.StartsWith("int", StringComparison.Ordinal) || type.StartsWith("uint", StringComparison.Ordinal)
            || type.StartsWith("long", StringComparison.Ordinal) || type.StartsWith("short", StringComparison.Ordinal)
            || type.StartsWith("unsigned", StringComparison.Ordinal))
            return ValueType.Integer;
        if (type.StartsWith("num", StringComparison.Ordinal) || type.StartsWith("float", StringComparison.Ordinal))
            return ValueType.Number;
        if (type is "boolean" or "bool" or "binary")
            return ValueType.Boolean;
        if (type is "object" or "array" or "arr" || type.StartsWith("dict", StringComparison.Ordinal) || type.StartsWith("list", StringComparison.Ordinal))
            return ValueType.Json;
        return ValueType.Other;
    }

    /// <summary>vLLM's <c>_convert_param_value</c> for a value that is not a string, as JSON text.</summary>
    private static string Convert(string value, ValueType type)
    {
        if (value.Equals("null", StringComparison.OrdinalIgnoreCase))
            return "null";
        var trimmed = value.AsSpan().Trim();
        switch (type)
        {
            case ValueType.Integer:
                if (BigInteger.TryParse(trimmed, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out var integer))
                    return integer.ToString(CultureInfo.InvariantCulture);
                break;
            case ValueType.Number:
                if (double.TryParse(trimmed, NumberStyles.Float, CultureInfo.InvariantCulture, out var number) && double.IsFinite(number))
                {
                    return number == Math.Floor(number)
                        ? new BigInteger(number).ToString(CultureInfo.InvariantCulture)
                        : number.ToString("R", CultureInfo.InvariantCulture);
                }
                break;
            case ValueType.Boolean:
                return value.Equals("true", StringComparison.OrdinalIgnoreCase) ? "true" : "false";
            case ValueType.Json:
                if (JsonText.Normalize(value) is { } json)
                    return json;
                goto default;
            default:
                if (PythonValueScanner.ToJson(value) is { } literal)
                    return literal;
                break;
        }
        return JsonText.Quote(value);
    }
}
