using System.Text;

namespace Celer.Grammars;

/// <summary>
/// The body of a grammar rule: an expression over bytes (UTF-8 for text), the common form that JSON schemas,
/// regular expressions, GBNF and choices all compile to. Code points are spelled as byte sequences
/// (<see cref="Utf8Ranges"/>), so the matcher never decodes UTF-8.
/// </summary>
public abstract record GrammarExpr
{
    /// <summary>Matches the empty string.</summary>
    public static GrammarExpr Empty { get; } = new SequenceExpr([]);

    /// <summary>The UTF-8 bytes of <paramref name="text"/>, in order.</summary>
    public static GrammarExpr Literal(string text) => Bytes(Encoding.UTF8.GetBytes(text));

    public static GrammarExpr Bytes(ReadOnlySpan<byte> bytes)
    {
        if (bytes.Length == 1)
        {
            return new ByteSetExpr(ByteSet.Of(bytes[0]));
        }

        var items = new GrammarExpr[bytes.Length];
        for (int i = 0; i < bytes.Length; i++)
        {
            items[i] = new ByteSetExpr(ByteSet.Of(bytes[i]));
        }

        return new SequenceExpr(items);
    }

    /// <summary>The items one after another; nested sequences are flattened and a single item stands alone.</summary>
    public static GrammarExpr Sequence(params IEnumerable<GrammarExpr> items)
    {
        var flat = new List<GrammarExpr>();
        foreach (var item in items)
        {
            if (item is SequenceExpr s)
            {
                flat.AddRange(s.Items);
            }
            else
            {
                flat.Add(item);
            }
        }

        return flat.Count == 1 ? flat[0] : new SequenceExpr([.. flat]);
    }

    /// <summary>Any one of the alternatives; a single alternative stands alone. No alternatives matches nothing.</summary>
    public static GrammarExpr Choice(params IEnumerable<GrammarExpr> alternatives)
    {
        var list = new List<GrammarExpr>();
        foreach (var a in alternatives)
        {
            if (a is ChoiceExpr c)
            {
                list.AddRange(c.Alternatives);
            }
            else
            {
                list.Add(a);
            }
        }

        return list.Count == 1 ? list[0] : new ChoiceExpr([.. list]);
    }

    /// <summary><paramref name="item"/> between <paramref name="min"/> and <paramref name="max"/> times (null: unbounded).</summary>
    public static GrammarExpr Repeat(GrammarExpr item, int min, int? max)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(min);
        if (max is { } m && m < min)
        {
            throw new ArgumentOutOfRangeException(nameof(max), $"max {m} is below min {min}.");
        }

        return max == 1 && min == 1 ? item : new RepeatExpr(item, min, max);
    }

    public static GrammarExpr Optional(GrammarExpr item) => Repeat(item, 0, 1);

    public static GrammarExpr Star(GrammarExpr item) => Repeat(item, 0, null);

    public static GrammarExpr Plus(GrammarExpr item) => Repeat(item, 1, null);

    public static GrammarExpr Ref(int rule) => new RuleRefExpr(rule);
}

/// <summary>One byte from the set. An empty set matches nothing.</summary>
public sealed record ByteSetExpr(ByteSet Set) : GrammarExpr
{
    public override string ToString() => Set.ToString();
}

/// <summary>The items one after another; no items matches the empty string.</summary>
public sealed record SequenceExpr(GrammarExpr[] Items) : GrammarExpr
{
    public override string ToString() => Items.Length == 0 ? "\"\"" : "(" + string.Join(" ", Items.Select(i => i.ToString())) + ")";
}

/// <summary>Any one of the alternatives; none matches nothing.</summary>
public sealed record ChoiceExpr(GrammarExpr[] Alternatives) : GrammarExpr
{
    public override string ToString() => "(" + string.Join(" | ", Alternatives.Select(a => a.ToString())) + ")";
}

/// <summary>The item repeated Min..Max times (Max null: unbounded).</summary>
public sealed record RepeatExpr(GrammarExpr Item, int Min, int? Max) : GrammarExpr
{
    public override string ToString() => $"{Item}{{{Min},{Max}}}";
}

/// <summary>The body of another rule of the same grammar (by index), which may refer back: recursion.</summary>
public sealed record RuleRefExpr(int Rule) : GrammarExpr
{
    public override string ToString() => $"<{Rule}>";
}
