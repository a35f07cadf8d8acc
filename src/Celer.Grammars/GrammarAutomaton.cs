using System.Text;

namespace Celer.Grammars;

/// <summary>
/// A grammar compiled for matching: each rule an epsilon-free NFA over bytes whose edges consume a byte or call
/// another rule (<see cref="NfaBuilder"/>), run as a pushdown automaton over a set of persistent stacks (the approach
/// of llama.cpp's grammar sampler and XGrammar's pushdown automaton). Left recursion is refused at compile time,
/// since a stack machine would push forever on it; everything else context-free is accepted. Immutable and
/// thread-safe; the per-step work allocates only the frames it creates.
/// </summary>
public sealed class GrammarAutomaton
{
    private readonly bool[] _pureEnd;

    private GrammarAutomaton(Grammar grammar, AutomatonState[] states, int[] ruleStarts)
    {
        Grammar = grammar;
        States = states;
        RuleStarts = ruleStarts;
        _pureEnd = [.. states.Select(s => s.Final && s.Bytes.Length == 0 && s.Calls.Length == 0)];
        CheckLeftRecursion();
        Initial = Start(RuleStarts[grammar.Root], new StepScratch());
    }

    public Grammar Grammar { get; }

    public int StateCount => States.Length;

    internal AutomatonState[] States { get; }

    internal int[] RuleStarts { get; }

    /// <summary>Before any byte: the root rule at its start.</summary>
    internal StackSet Initial { get; }

    public static GrammarAutomaton Compile(Grammar grammar)
    {
        ArgumentNullException.ThrowIfNull(grammar);
        var states = NfaBuilder.Build(grammar, out int[] starts);
        return new GrammarAutomaton(grammar, states, starts);
    }

    /// <summary>Whether the whole text is a sentence of the grammar.</summary>
    public bool Matches(string text) => Matches(Encoding.UTF8.GetBytes(text));

    public bool Matches(ReadOnlySpan<byte> text) => Run(text).Ended;

    /// <summary>Whether some continuation of the text is a sentence (the text is a prefix of one).</summary>
    public bool IsPrefix(ReadOnlySpan<byte> text) => !Run(text).IsDead;

    private StackSet Run(ReadOnlySpan<byte> text)
    {
        var scratch = new StepScratch();
        var set = Initial;
        foreach (byte b in text)
        {
            set = Step(set, b, scratch);
            if (set.IsDead)
            {
                break;
            }
        }

        return set;
    }

    /// <summary>The stacks after one more byte; dead if no stack takes it.</summary>
    internal StackSet Step(StackSet set, byte value, StepScratch scratch)
    {
        scratch.Clear();
        foreach (var frame in set.Stacks)
        {
            foreach (var edge in States[frame.State].Bytes)
            {
                if (edge.Set.Contains(value))
                {
                    Expand(new Frame(edge.Target, frame.Parent), scratch);
                }
            }
        }

        return scratch.ToStackSet();
    }

    /// <summary>A stack of one frame at <paramref name="state"/> with nothing below, expanded.</summary>
    internal StackSet Start(int state, StepScratch scratch)
    {
        scratch.Clear();
        Expand(new Frame(state, null), scratch);
        return scratch.ToStackSet();
    }

    /// <summary>
    /// Adds every stack the frame stands for once epsilon moves are taken: calls push the callee's start (a return to a
    /// state where the caller can only end pushes nothing, so right recursion does not deepen the stack), and a rule
    /// that may end pops to its caller, or marks the bottom as ended.
    /// </summary>
    private void Expand(Frame frame, StepScratch scratch)
    {
        if (!scratch.Visited.Add(frame))
        {
            return;
        }

        var state = States[frame.State];
        if (state.Bytes.Length > 0)
        {
            scratch.Output.Add(frame);
        }

        foreach (var call in state.Calls)
        {
            Frame? caller = _pureEnd[call.Return] ? frame.Parent : new Frame(call.Return, frame.Parent);
            Expand(new Frame(RuleStarts[call.Rule], caller), scratch);
        }

        if (state.Final)
        {
            if (frame.Parent is null)
            {
                scratch.Ended = true;
            }
            else
            {
                Expand(frame.Parent, scratch);
            }
        }
    }

    /// <summary>
    /// Refuses a rule that can call itself before consuming a byte (directly, or through rules that can match the
    /// empty string): the stack machine would push forever.
    /// </summary>
    private void CheckLeftRecursion()
    {
        int rules = RuleStarts.Length;
        var nullable = new bool[rules];
        for (bool changed = true; changed;)
        {
            changed = false;
            for (int r = 0; r < rules; r++)
            {
                if (!nullable[r] && LeftEdge(r, nullable, null))
                {
                    nullable[r] = true;
                    changed = true;
                }
            }
        }

        var calls = new List<int>[rules];
        for (int r = 0; r < rules; r++)
        {
            calls[r] = [];
            LeftEdge(r, nullable, calls[r]);
        }

        // A cycle in "calls before any byte" is left recursion.
        var color = new byte[rules];
        for (int r = 0; r < rules; r++)
        {
            Visit(r);
        }

        void Visit(int r)
        {
            if (color[r] == 2)
            {
                return;
            }

            if (color[r] == 1)
            {
                throw new GrammarException($"The grammar is left-recursive at rule '{Grammar.Rules[r].Name}': it can call itself before matching any character. Rewrite it with repetition.");
            }

            color[r] = 1;
            foreach (int callee in calls[r])
            {
                Visit(callee);
            }

            color[r] = 2;
        }
    }

    // Walks rule r's states reachable without a byte (through calls of nullable rules); records the calls met and
    // returns whether the rule can end there.
    private bool LeftEdge(int r, bool[] nullable, List<int>? callsMet)
    {
        var seen = new HashSet<int>();
        var work = new Stack<int>();
        work.Push(RuleStarts[r]);
        bool ends = false;
        while (work.Count > 0)
        {
            int s = work.Pop();
            if (!seen.Add(s))
            {
                continue;
            }

            ends |= States[s].Final;
            foreach (var call in States[s].Calls)
            {
                callsMet?.Add(call.Rule);
                if (nullable[call.Rule])
                {
                    work.Push(call.Return);
                }
            }
        }

        return ends;
    }
}

/// <summary>Reusable buffers of one thread's steps.</summary>
internal sealed class StepScratch
{
    public List<Frame> Output { get; } = [];

    public HashSet<Frame> Visited { get; } = [];

    public bool Ended { get; set; }

    public void Clear()
    {
        Output.Clear();
        Visited.Clear();
        Ended = false;
    }

    public StackSet ToStackSet() => Output.Count == 0 && !Ended ? StackSet.Dead : new StackSet([.. Output], Ended);
}
