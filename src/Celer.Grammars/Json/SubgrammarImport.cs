namespace Celer.Grammars.Json;

/// <summary>
/// Copies a grammar built on its own (a regular expression compiled by <see cref="RegexGrammar"/>) into the JSON
/// grammar, after narrowing every byte set to the bytes the JSON position allows. Narrowing is exact at the code point
/// level: Utf8Ranges spells a code point as a lead byte and continuation bytes, so dropping ASCII bytes drops exactly
/// those one-byte characters and nothing else.
/// </summary>
internal static class SubgrammarImport
{
    /// <summary><paramref name="source"/> with every byte set intersected with <paramref name="allowed"/>.</summary>
    public static Grammar Narrow(Grammar source, ByteSet allowed) =>
        new([.. source.Rules.Select(r => r with { Body = Narrow(r.Body, allowed) })], source.Root);

    /// <summary>The root of <paramref name="source"/>, as a reference to its copy in <paramref name="target"/>.</summary>
    public static GrammarExpr Import(GrammarBuilder target, Grammar source, string name)
    {
        var rules = new int[source.Rules.Count];
        for (int r = 0; r < rules.Length; r++)
        {
            rules[r] = target.Declare($"{name}-{source.Rules[r].Name}");
        }

        for (int r = 0; r < rules.Length; r++)
        {
            target.Define(rules[r], Renumber(source.Rules[r].Body, rules));
        }

        return GrammarExpr.Ref(rules[source.Root]);
    }

    private static GrammarExpr Narrow(GrammarExpr expr, ByteSet allowed) => Map(expr, b => new ByteSetExpr(b.Set.Intersect(allowed)), r => r);

    private static GrammarExpr Renumber(GrammarExpr expr, int[] rules) => Map(expr, b => b, r => new RuleRefExpr(rules[r.Rule]));

    private static GrammarExpr Map(GrammarExpr expr, Func<ByteSetExpr, GrammarExpr> bytes, Func<RuleRefExpr, GrammarExpr> rules) => expr switch
    {
        ByteSetExpr b => bytes(b),
        SequenceExpr s => new SequenceExpr([.. s.Items.Select(i => Map(i, bytes, rules))]),
        ChoiceExpr c => new ChoiceExpr([.. c.Alternatives.Select(a => Map(a, bytes, rules))]),
        RepeatExpr r => new RepeatExpr(Map(r.Item, bytes, rules), r.Min, r.Max),
        RuleRefExpr r => rules(r),
        _ => throw new InvalidOperationException($"Unknown grammar expression {expr.GetType().Name}."),
    };
}
