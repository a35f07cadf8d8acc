namespace Celer.ChatTemplates.Runtime;

/// <summary>
/// Jinja's scoping: the template body is one scope; a for loop body and a macro call each open a child scope,
/// so <c>set</c> inside a loop does not leak out of it (the reason templates use <c>namespace()</c>), while
/// <c>set</c> inside an if does.
/// </summary>
internal sealed class Scope(Scope? parent)
{
    private readonly Dictionary<string, object?> _vars = [];

    public Scope? Parent { get; } = parent;

    public bool TryGet(string name, out object? value)
    {
        for (var s = this; s is not null; s = s.Parent)
        {
            if (s._vars.TryGetValue(name, out value)) return true;
        }
        value = null;
        return false;
    }

    public void Set(string name, object? value) => _vars[name] = value;
}
