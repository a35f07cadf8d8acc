namespace Celer.Grammars;

/// <summary>
/// Where a matcher stands: every stack the input so far can have left (its top frame at a state with byte edges, so
/// the next byte can move it), and whether the bottom rule can have ended exactly here (<see cref="Ended"/>: for the
/// root, the output is complete). Dead when both are empty. Immutable but for <see cref="Transitions"/>, the memo of
/// its successors by byte, which a <see cref="CompiledGrammar"/> fills for the sets it interns: the sets and their
/// transitions are then a DFA built lazily, and a step taken before is one array read. Equal sets hash alike (the
/// mask cache key).
/// </summary>
internal sealed class StackSet : IEquatable<StackSet>
{
    private readonly int _hash;

    public StackSet(Frame[] stacks, bool ended)
    {
        Stacks = stacks;
        Ended = ended;
        var hash = new HashCode();
        hash.Add(ended);
        // Order-independent, as the set is.
        int combined = 0;
        foreach (var f in stacks)
        {
            combined ^= f.GetHashCode() * 16777619;
        }

        hash.Add(combined);
        hash.Add(stacks.Length);
        _hash = hash.ToHashCode();
    }

    public static StackSet Dead { get; } = new([], false);

    public Frame[] Stacks { get; }

    public bool Ended { get; }

    public bool IsDead => Stacks.Length == 0 && !Ended;

    /// <summary>The interned successor by each byte, once computed; null until the first is.</summary>
    public StackSet?[]? Transitions;

    public bool Equals(StackSet? other)
    {
        if (ReferenceEquals(this, other))
        {
            return true;
        }

        if (other is null || other._hash != _hash || other.Ended != Ended || other.Stacks.Length != Stacks.Length)
        {
            return false;
        }

        foreach (var f in Stacks)
        {
            if (Array.IndexOf(other.Stacks, f) < 0)
            {
                return false;
            }
        }

        return true;
    }

    public override bool Equals(object? obj) => obj is StackSet other && Equals(other);

    public override int GetHashCode() => _hash;
}
