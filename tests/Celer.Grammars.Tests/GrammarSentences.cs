using System.Text;

namespace Celer.Grammars.Tests;

/// <summary>
/// Random sentences of a grammar, by walking its expressions: a random alternative, a random repeat count, a random
/// byte of each set. Past a size budget every choice takes its shortest way out (the least bytes a rule can still
/// produce, computed to a fixpoint), so recursive rules end. Seeded, so a failure replays.
/// </summary>
internal sealed class GrammarSentences
{
    private const int Unproductive = int.MaxValue / 4;

    private readonly Grammar _grammar;
    private readonly Random _random;
    private readonly int[] _ruleCost;
    private readonly int _budget;
    private readonly Dictionary<GrammarExpr, int> _costs = new(ReferenceEqualityComparer.Instance);
    private bool _costsFinal;

    public GrammarSentences(Grammar grammar, int seed, int budget = 400)
    {
        _grammar = grammar;
        _random = new Random(seed);
        _budget = budget;
        _ruleCost = Enumerable.Repeat(Unproductive, grammar.Rules.Count).ToArray();
        for (bool changed = true; changed;)
        {
            changed = false;
            for (int r = 0; r < _ruleCost.Length; r++)
            {
                int cost = Cost(grammar.Rules[r].Body);
                if (cost < _ruleCost[r])
                {
                    _ruleCost[r] = cost;
                    changed = true;
                }
            }
        }

        _costsFinal = true;
    }

    public string Next()
    {
        var bytes = new List<byte>();
        Walk(GrammarExpr.Ref(_grammar.Root), bytes);
        return Encoding.UTF8.GetString([.. bytes]);
    }

    private void Walk(GrammarExpr expr, List<byte> output)
    {
        bool spent = output.Count > _budget;
        switch (expr)
        {
            case ByteSetExpr b:
                var values = b.Set.Values().ToList();
                output.Add(values[_random.Next(values.Count)]);
                break;
            case SequenceExpr s:
                foreach (var item in s.Items)
                {
                    Walk(item, output);
                }

                break;
            case ChoiceExpr c:
                var productive = c.Alternatives.Where(a => Cost(a) < Unproductive).ToList();
                Walk(spent ? productive.MinBy(Cost)! : productive[_random.Next(productive.Count)], output);
                break;
            case RepeatExpr r:
                int most = r.Max is { } max ? Math.Min(max, r.Min + 4) : r.Min + 4;
                int count = spent || Cost(r.Item) >= Unproductive ? r.Min : _random.Next(r.Min, most + 1);
                for (int i = 0; i < count; i++)
                {
                    Walk(r.Item, output);
                }

                break;
            case RuleRefExpr r:
                Walk(_grammar.Rules[r.Rule].Body, output);
                break;
        }
    }

    // The fewest bytes the expression produces (Unproductive: none); remembered once the rule costs are final.
    private int Cost(GrammarExpr expr)
    {
        if (_costs.TryGetValue(expr, out int known))
        {
            return known;
        }

        int cost = ComputeCost(expr);
        if (_costsFinal)
        {
            _costs[expr] = cost;
        }

        return cost;
    }

    private int ComputeCost(GrammarExpr expr) => expr switch
    {
        ByteSetExpr b => b.Set.IsEmpty ? Unproductive : 1,
        SequenceExpr s => Math.Min(Unproductive, s.Items.Sum(i => (long)Cost(i)) is var sum && sum > Unproductive ? Unproductive : (int)sum),
        ChoiceExpr c => c.Alternatives.Length == 0 ? Unproductive : c.Alternatives.Min(Cost),
        RepeatExpr r => r.Min == 0 ? 0 : (int)Math.Min(Unproductive, (long)Cost(r.Item) * r.Min),
        RuleRefExpr r => _ruleCost[r.Rule],
        _ => throw new InvalidOperationException(expr.GetType().Name),
    };
}
