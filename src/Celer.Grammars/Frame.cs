namespace Celer.Grammars;

/// <summary>
/// One frame of a matcher's stack, persistent: the automaton state reached in the frame's rule and the frame to
/// return to (already at its return state) when the rule ends; null below the root. Stacks share their tails, so
/// advancing one of many stacks copies only its top. Equality is structural, so the same stack reached by two paths
/// is kept once.
/// </summary>
internal sealed class Frame : IEquatable<Frame>
{
    private readonly int _hash;

    public Frame(int state, Frame? parent)
    {
        State = state;
        Parent = parent;
        Depth = parent is null ? 1 : parent.Depth + 1;
        _hash = HashCode.Combine(state, parent?._hash ?? 0);
    }

    public int State { get; }

    public Frame? Parent { get; }

    public int Depth { get; }

    public bool Equals(Frame? other)
    {
        Frame? a = this, b = other;
        while (true)
        {
            if (ReferenceEquals(a, b))
            {
                return true;
            }

            if (a is null || b is null || a._hash != b._hash || a.State != b.State || a.Depth != b.Depth)
            {
                return false;
            }

            a = a.Parent;
            b = b.Parent;
        }
    }

    public override bool Equals(object? obj) => obj is Frame other && Equals(other);

    public override int GetHashCode() => _hash;
}
