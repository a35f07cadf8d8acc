namespace Celer.Grammars;

/// <summary>
/// Turns each rule's expression into a Thompson NFA over bytes (byte-set, epsilon and call edges), then removes the
/// epsilon edges: a state of the result is a rule's start or a state entered by a byte or by returning from a call, and
/// carries the byte and call edges of everything its epsilon closure reaches. Bounded repetition is expanded into
/// copies, so the number of states is capped (<see cref="MaxStates"/>) against patterns like <c>.{0,100000}</c>.
/// </summary>
internal sealed class NfaBuilder
{
    public const int MaxStates = 1 << 20;

    private readonly List<List<(ByteSet Set, int Target)>> _bytes = [];
    private readonly List<List<(int Rule, int Return)>> _calls = [];
    private readonly List<List<int>> _epsilon = [];
    private readonly List<int> _ruleOf = [];
    private readonly List<bool> _final = [];

    public static AutomatonState[] Build(Grammar grammar, out int[] ruleStarts)
    {
        var builder = new NfaBuilder();
        var starts = new int[grammar.Rules.Count];
        for (int r = 0; r < grammar.Rules.Count; r++)
        {
            int start = builder.NewState(r), end = builder.NewState(r);
            builder._final[end] = true;
            starts[r] = start;
            builder.Add(grammar.Rules[r].Body, start, end, r, grammar);
        }

        return builder.RemoveEpsilons(starts, out ruleStarts);
    }

    private int NewState(int rule)
    {
        if (_ruleOf.Count >= MaxStates)
        {
            throw new GrammarException($"The grammar is too large: more than {MaxStates} automaton states (bounded repetitions are expanded; lower the bounds).");
        }

        _bytes.Add([]);
        _calls.Add([]);
        _epsilon.Add([]);
        _ruleOf.Add(rule);
        _final.Add(false);
        return _ruleOf.Count - 1;
    }

    // Adds edges so that the paths from `from` to `to` spell exactly the sentences of `expr`.
    private void Add(GrammarExpr expr, int from, int to, int rule, Grammar grammar)
    {
        switch (expr)
        {
            case ByteSetExpr b:
                if (!b.Set.IsEmpty)
                {
                    _bytes[from].Add((b.Set, to));
                }

                break;
            case SequenceExpr s:
                if (s.Items.Length == 0)
                {
                    _epsilon[from].Add(to);
                    break;
                }

                int at = from;
                for (int i = 0; i < s.Items.Length; i++)
                {
                    int next = i == s.Items.Length - 1 ? to : NewState(rule);
                    Add(s.Items[i], at, next, rule, grammar);
                    at = next;
                }

                break;
            case ChoiceExpr c:
                foreach (var alternative in c.Alternatives)
                {
                    // Each alternative gets a fresh entry so that a loop inside one cannot leak into another.
                    int entry = NewState(rule);
                    _epsilon[from].Add(entry);
                    Add(alternative, entry, to, rule, grammar);
                }

                break;
            case RepeatExpr r:
                AddRepeat(r, from, to, rule, grammar);
                break;
            case RuleRefExpr call:
                if ((uint)call.Rule >= (uint)grammar.Rules.Count)
                {
                    throw new GrammarException($"Rule reference <{call.Rule}> points to no rule.");
                }

                _calls[from].Add((call.Rule, to));
                break;
            default:
                throw new GrammarException($"Unknown grammar expression {expr.GetType().Name}.");
        }
    }

    private void AddRepeat(RepeatExpr r, int from, int to, int rule, Grammar grammar)
    {
        int at = from;
        for (int i = 0; i < r.Min; i++)
        {
            int next = NewState(rule);
            Add(r.Item, at, next, rule, grammar);
            at = next;
        }

        if (r.Max is null)
        {
            // at -ε-> loop; loop -item-> back -ε-> loop; loop -ε-> to. Fresh states keep the loop to this item.
            int loop = NewState(rule), back = NewState(rule);
            _epsilon[at].Add(loop);
            Add(r.Item, loop, back, rule, grammar);
            _epsilon[back].Add(loop);
            _epsilon[loop].Add(to);
            return;
        }

        for (int i = r.Min; i < r.Max.Value; i++)
        {
            _epsilon[at].Add(to);
            int next = NewState(rule);
            Add(r.Item, at, next, rule, grammar);
            at = next;
        }

        _epsilon[at].Add(to);
    }

    private AutomatonState[] RemoveEpsilons(int[] starts, out int[] ruleStarts)
    {
        // The states that survive: rule starts, byte targets and call return points.
        var kept = new Dictionary<int, int>();
        var order = new List<int>();
        void Keep(int state)
        {
            if (kept.TryAdd(state, order.Count))
            {
                order.Add(state);
            }
        }

        foreach (int s in starts)
        {
            Keep(s);
        }

        for (int s = 0; s < _ruleOf.Count; s++)
        {
            foreach (var (_, target) in _bytes[s])
            {
                Keep(target);
            }

            foreach (var (_, ret) in _calls[s])
            {
                Keep(ret);
            }
        }

        var states = new AutomatonState[order.Count];
        var closure = new List<int>();
        var seen = new HashSet<int>();
        for (int i = 0; i < order.Count; i++)
        {
            closure.Clear();
            seen.Clear();
            Close(order[i], closure, seen);
            var bytesByTarget = new Dictionary<int, ByteSet>();
            var calls = new List<(int Rule, int Return)>();
            bool final = false;
            foreach (int s in closure)
            {
                final |= _final[s];
                foreach (var (set, target) in _bytes[s])
                {
                    int t = kept[target];
                    bytesByTarget[t] = bytesByTarget.TryGetValue(t, out var existing) ? existing.Union(set) : set;
                }

                foreach (var (callee, ret) in _calls[s])
                {
                    var call = (callee, kept[ret]);
                    if (!calls.Contains(call))
                    {
                        calls.Add(call);
                    }
                }
            }

            states[i] = new AutomatonState(_ruleOf[order[i]], [.. bytesByTarget.Select(e => new ByteEdge(e.Value, e.Key))], [.. calls.Select(c => new CallEdge(c.Rule, c.Item2))], final);
        }

        ruleStarts = [.. starts.Select(s => kept[s])];
        return states;
    }

    private void Close(int state, List<int> closure, HashSet<int> seen)
    {
        var stack = new Stack<int>();
        stack.Push(state);
        while (stack.Count > 0)
        {
            int s = stack.Pop();
            if (!seen.Add(s))
            {
                continue;
            }

            closure.Add(s);
            foreach (int t in _epsilon[s])
            {
                stack.Push(t);
            }
        }
    }
}

/// <summary>A byte transition: any byte of <see cref="Set"/> moves to <see cref="Target"/>.</summary>
internal readonly record struct ByteEdge(ByteSet Set, int Target);

/// <summary>A call: match <see cref="Rule"/> from its start, then continue at <see cref="Return"/>.</summary>
internal readonly record struct CallEdge(int Rule, int Return);

/// <summary>An epsilon-free automaton state of one rule; <see cref="Final"/>: the rule may end here.</summary>
internal sealed record AutomatonState(int Rule, ByteEdge[] Bytes, CallEdge[] Calls, bool Final);
