namespace Celer.Grammars.Json;

/// <summary>
/// The shortest and longest texts, in code points, that an expression matches: whether a <c>pattern</c> or a
/// <c>format</c> already implies a schema's <c>minLength</c>/<c>maxLength</c>. A byte position counts as a code point
/// unless it only takes UTF-8 continuation bytes (0x80–0xBF), which is how Utf8Ranges spells every character.
/// </summary>
internal static class CodePointLengths
{
    private const long Unbounded = long.MaxValue / 4;

    private static readonly ByteSet Continuation = ByteSet.Range(0x80, 0xBF);

    /// <summary>Min is null when nothing matches; Max is null when texts can be arbitrarily long (or recursion
    /// makes it hard to tell: an over-estimate only makes a caller refuse, never accept too much).</summary>
    public static (int? Min, int? Max) Of(GrammarExpr expr, IReadOnlyList<GrammarRule> rules)
    {
        long[] ruleMin = MinOfRules(rules);
        long min = Min(expr, ruleMin);
        var ruleMax = new long?[rules.Count];
        var onStack = new bool[rules.Count];
        long max = Max(expr, rules, ruleMax, onStack);
        return (min >= Unbounded ? null : (int)min, max >= Unbounded ? null : (int)max);
    }

    // Least fixpoint: a rule's minimum only falls as the minima it depends on fall.
    private static long[] MinOfRules(IReadOnlyList<GrammarRule> rules)
    {
        var min = Enumerable.Repeat(Unbounded, rules.Count).ToArray();
        for (bool changed = true; changed;)
        {
            changed = false;
            for (int r = 0; r < rules.Count; r++)
            {
                long m = Min(rules[r].Body, min);
                if (m < min[r])
                {
                    min[r] = m;
                    changed = true;
                }
            }
        }

        return min;
    }

    private static long Min(GrammarExpr expr, long[] ruleMin) => expr switch
    {
        ByteSetExpr b => b.Set.IsEmpty ? Unbounded : Width(b.Set),
        SequenceExpr s => s.Items.Aggregate(0L, (sum, i) => Add(sum, Min(i, ruleMin))),
        ChoiceExpr c => c.Alternatives.Length == 0 ? Unbounded : c.Alternatives.Min(a => Min(a, ruleMin)),
        RepeatExpr r => r.Min == 0 ? 0 : Times(Min(r.Item, ruleMin), r.Min),
        RuleRefExpr r => ruleMin[r.Rule],
        _ => throw new InvalidOperationException($"Unknown grammar expression {expr.GetType().Name}."),
    };

    private static long Max(GrammarExpr expr, IReadOnlyList<GrammarRule> rules, long?[] ruleMax, bool[] onStack)
    {
        switch (expr)
        {
            case ByteSetExpr b:
                return Width(b.Set);
            case SequenceExpr s:
                return s.Items.Aggregate(0L, (sum, i) => Add(sum, Max(i, rules, ruleMax, onStack)));
            case ChoiceExpr c:
                return c.Alternatives.Length == 0 ? 0 : c.Alternatives.Max(a => Max(a, rules, ruleMax, onStack));
            case RepeatExpr r:
                long item = Max(r.Item, rules, ruleMax, onStack);
                return item == 0 ? 0 : r.Max is { } m ? Times(item, m) : Unbounded;
            case RuleRefExpr r:
                if (ruleMax[r.Rule] is { } known)
                {
                    return known;
                }

                if (onStack[r.Rule])
                {
                    return Unbounded;
                }

                onStack[r.Rule] = true;
                long max = Max(rules[r.Rule].Body, rules, ruleMax, onStack);
                onStack[r.Rule] = false;
                ruleMax[r.Rule] = max;
                return max;
            default:
                throw new InvalidOperationException($"Unknown grammar expression {expr.GetType().Name}.");
        }
    }

    // Saturating at Unbounded, which stays far from overflow: both operands are at most Unbounded.
    private static long Add(long a, long b) => Math.Min(Unbounded, a + b);

    private static long Times(long a, int b) => a >= Unbounded / Math.Max(b, 1) ? Unbounded : a * b;

    private static long Width(ByteSet set) => set.Intersect(Continuation.Complement()).IsEmpty ? 0 : 1;
}
