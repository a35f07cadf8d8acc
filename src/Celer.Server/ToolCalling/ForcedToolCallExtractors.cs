namespace Celer.Server.ToolCalling;

/// <summary>
/// <c>tool_choice: {"type": "function", "function": {"name": "f"}}</c>: the output, constrained to the function's
/// parameter schema, is the arguments, exactly as written (vLLM's named tool choice). The call exists from the first
/// delta on, so a stream sends its id and name before any argument.
/// </summary>
internal sealed class NamedToolCallExtractor(ToolCallSink sink, string name) : ToolCallExtractor(sink)
{
    private int _index = -1;

    protected override void Consume(string input, bool final)
    {
        if (_index < 0)
            _index = Sink.StartCall(name);
        Sink.AppendArguments(_index, input);
    }
}

/// <summary>
/// <c>tool_choice: "required"</c>: the output, constrained to a JSON array of <c>{"name", "parameters"}</c> objects
/// (<see cref="ToolSchemas.ForRequired"/>), read as calls (vLLM parses it with <c>list[FunctionDefinition]</c>). Output
/// that is not such an array (no constraint was enforced) is content.
/// </summary>
internal sealed class RequiredToolCallExtractor(ToolCallSink sink) : ToolCallExtractor(sink)
{
    private static readonly string[] ArgumentKeys = ["parameters"];

    private readonly JsonCallArrayReader _array = new(sink, ArgumentKeys);
    private bool _done;

    protected override void Consume(string input, bool final)
    {
        if (_done)
        {
            Sink.AppendContent(input);
            return;
        }
        int pos = 0;
        if (!ReadToEnd(_array, input, ref pos, final))
            return;
        if (_array.Count == 0)
        {
            FailRegion(input.AsSpan(pos));
            return;
        }
        _done = true;
        Sink.AppendContent(input.AsSpan(pos));
    }
}
