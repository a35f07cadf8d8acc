using System.Text;

namespace Celer.Server.ToolCalling;

/// <summary>One tool call as a parser has read it so far: the whole name, and the arguments JSON as far as it is known.</summary>
internal sealed class ToolCallDraft(string name)
{
    public string Name { get; } = name;
    public StringBuilder Arguments { get; } = new();
}

/// <summary>
/// What a <see cref="ToolCallExtractor"/> has made of one choice's content so far: the text outside the calls and the
/// calls. Both only grow, so a stream can send the difference after each delta and a finished answer reads the whole.
/// Whitespace that touches a call (the newline before <c>&lt;tool_call&gt;</c>, the one after <c>&lt;/tool_call&gt;</c>)
/// is not content: it is held until non-whitespace text follows it, and dropped when a call does.
/// </summary>
internal sealed class ToolCallSink
{
    private readonly StringBuilder _pendingSpace = new();
    private bool _afterCall;

    /// <summary>Content that will not change; held whitespace is not in it yet.</summary>
    public StringBuilder Content { get; } = new();

    public List<ToolCallDraft> Calls { get; } = [];

    /// <summary>
    /// The output did not follow the format after all (malformed JSON, an unclosed call at the end). A finished answer
    /// then returns the whole text as content and no calls, as vLLM does; a stream, which cannot take back what it sent,
    /// goes on with the rest of the text as content.
    /// </summary>
    public bool Failed { get; private set; }

    public void AppendContent(ReadOnlySpan<char> text)
    {
        foreach (var c in text)
        {
            if (char.IsWhiteSpace(c))
            {
                if (!_afterCall)
                    _pendingSpace.Append(c);
                continue;
            }
            _afterCall = false;
            if (_pendingSpace.Length > 0)
            {
                Content.Append(_pendingSpace);
                _pendingSpace.Clear();
            }
            Content.Append(c);
        }
    }

    /// <summary>A call whose name is known; returns its index.</summary>
    public int StartCall(string name)
    {
        _pendingSpace.Clear();
        _afterCall = false;
        Calls.Add(new ToolCallDraft(name));
        return Calls.Count - 1;
    }

    public void AppendArguments(int index, ReadOnlySpan<char> text) => Calls[index].Arguments.Append(text);

    /// <summary>The call's text is over: whitespace right after it is not content.</summary>
    public void EndCall()
    {
        _pendingSpace.Clear();
        _afterCall = true;
    }

    /// <summary>The format broke; <paramref name="literal"/> (the text read as a call but not sent as one) becomes content.</summary>
    public void Fail(ReadOnlySpan<char> literal)
    {
        Failed = true;
        _afterCall = false;
        AppendContent(literal);
    }

    /// <summary>The end of the output: held whitespace at the very end is content.</summary>
    public void Finish()
    {
        Content.Append(_pendingSpace);
        _pendingSpace.Clear();
    }
}
