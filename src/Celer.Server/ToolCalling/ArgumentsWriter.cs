using System.Text;

namespace Celer.Server.ToolCalling;

/// <summary>
/// Copies what a <see cref="JsonValueScanner"/> writes for a call's arguments into the sink, once the call exists there
/// (its name may come after its arguments in the model's JSON). Formats that give arguments one by one (pythonic,
/// Qwen3's XML) build the object with <see cref="StartObject"/>, <see cref="Key"/> and <see cref="EndObject"/>.
/// </summary>
internal sealed class ArgumentsWriter(ToolCallSink sink)
{
    private int _keys;

    public StringBuilder Buffer { get; } = new();

    /// <summary>The call's index in the sink; -1 until its name is known.</summary>
    public int Index { get; private set; } = -1;

    public void Start(string name)
    {
        Index = sink.StartCall(name);
        Flush();
    }

    public void Flush()
    {
        if (Index < 0 || Buffer.Length == 0)
            return;
        foreach (var chunk in Buffer.GetChunks())
            sink.AppendArguments(Index, chunk.Span);
        Buffer.Clear();
    }

    /// <summary>The call <paramref name="name"/> with its arguments object opened.</summary>
    public void StartObject(string name)
    {
        Start(name);
        Buffer.Append('{');
        Flush();
    }

    /// <summary>The next argument's key, after a comma from the one before; its value follows in <see cref="Buffer"/>.</summary>
    public void Key(string key)
    {
        Buffer.Append(_keys++ == 0 ? "" : ", ").Append(JsonText.Quote(key)).Append(": ");
        Flush();
    }

    /// <summary>Closes the arguments object, and with it the call.</summary>
    public void EndObject()
    {
        Buffer.Append('}');
        Flush();
        sink.EndCall();
    }
}
