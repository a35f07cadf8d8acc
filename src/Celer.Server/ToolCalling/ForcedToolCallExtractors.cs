namespace Celer.Server.ToolCalling;

/// <summary>
/// <c>tool_choice: {"type": "function", "function": {"name": "f"}}</c>: the output, constrained to the function's
/// parameter schema, is the arguments, exactly as written (vLLM's named tool choice). The call exists from the first
/// delta on, so a stream sends its id and name before any argument.
/// </summary>
internal sealed class NamedToolCallExtractor(ToolCallSink sink, string name) : ToolCallExtractor(sink)
{
    private int _index = -1;

    protected override void Consume(string text, bool final)
    {
        if (_index < 0)
            _index = Sink.StartCall(name);
        Sink.AppendArguments(_index, text);
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

    protected override void Consume(string text, bool final)
    {
        if (_done)
        {
            Sink.AppendContent(text);
            return;
        }
        for (int i = 0; i < text.Length; i++)
        {
            AppendRegion(text[i]);
            var status = _array.Feed(text[i]);
            if (status == ScanStatus.Error || (status == ScanStatus.Complete && _array.Count == 0))
            {
                FailRegion(text.AsSpan(i + 1));
                return;
            }
            if (status == ScanStatus.Complete)
            {
                _done = true;
                Sink.AppendContent(text.AsSpan(i + 1));
                return;
            }
        }
        if (final)
            FailRegion("");
    }
}
