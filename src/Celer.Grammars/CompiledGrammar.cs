using System.Collections.Concurrent;

namespace Celer.Grammars;

/// <summary>
/// A grammar bound to a model's vocabulary: computes which tokens may come next from a matcher's stacks, with two
/// caches in the spirit of XGrammar's adaptive token mask cache, shared by every request that uses the grammar.
/// <list type="bullet">
/// <item>Per automaton state (<see cref="StateMasks"/>): each token is tried from a stack holding only that state. A
/// token that stays inside the state's rule is allowed whatever lies below on the stack ("accepted"); one that dies
/// there is refused whatever lies below; only a token that runs past the end of the rule ("uncertain") depends on the
/// rest of the stack and is tried again with it at each step. Most tokens are decided here, once.</item>
/// <item>Per whole stack set: the finished mask, since generation revisits the same stacks (every character of a
/// JSON string leaves the same stacks), bounded in bytes.</item>
/// </list>
/// Steps go through a lazily built DFA: stack sets are interned and each remembers its successor by byte
/// (<see cref="StackSet.Transitions"/>), so walking the vocabulary's trie costs about one array read per node once the
/// sets it meets are known (a JSON string body's masks: milliseconds, not the second that stepping the pushdown
/// automaton for each of ~500k trie nodes took).
/// Thread-safe: rows of one step are masked in parallel.
/// </summary>
public sealed class CompiledGrammar
{
    private const long MaskCacheBytes = 4L << 20;

    // Interned stack sets, each of which may hold a 256-entry transition array (2 KB), so at most 8 MB per grammar: past
    // this many, steps are computed afresh. A JSON string body needs a few sets; a bounded one a few per position.
    private const int MaxInternedSets = 4096;

    // Lazy: rows masked in parallel that meet the same new state compute its verdicts once.
    private readonly ConcurrentDictionary<int, Lazy<StateMasks>> _stateMasks = new();
    private readonly ConcurrentDictionary<StackSet, uint[]> _masks = new();
    private readonly ConcurrentDictionary<StackSet, StackSet> _interned = new();
    private readonly int _maxCachedMasks;

    // The two caches' sizes, kept here: ConcurrentDictionary.Count takes every lock of the table, on the hot path.
    private int _maskCount, _internedCount;

    public CompiledGrammar(GrammarAutomaton automaton, TokenVocabulary vocabulary)
    {
        Automaton = automaton ?? throw new ArgumentNullException(nameof(automaton));
        Vocabulary = vocabulary ?? throw new ArgumentNullException(nameof(vocabulary));
        _maxCachedMasks = (int)Math.Max(16, MaskCacheBytes / (4L * vocabulary.BitmaskWords));
        Initial = Intern(automaton.Initial);
    }

    /// <summary>Where every matcher starts (interned).</summary>
    internal StackSet Initial { get; }

    public GrammarAutomaton Automaton { get; }

    public TokenVocabulary Vocabulary { get; }

    /// <summary>Computes the per-state masks of the states a matcher starts in, so the first step does not wait.</summary>
    public void Warm()
    {
        foreach (var frame in Initial.Stacks)
        {
            MasksOf(frame.State);
        }
    }

    /// <summary>The tokens allowed after <paramref name="set"/>: bit t of word t / 32 set for an allowed token t.</summary>
    internal void FillBitmask(StackSet set, Span<uint> bitmask, StepScratch scratch)
    {
        if (_masks.TryGetValue(set, out var cached))
        {
            cached.CopyTo(bitmask);
            return;
        }

        bitmask.Clear();
        foreach (var frame in set.Stacks)
        {
            var masks = MasksOf(frame.State);
            Or(bitmask, masks.Accepted);
            if (frame.Parent is null)
            {
                // The root's own end: nothing may follow it but the end of the sequence.
                continue;
            }

            var single = Intern(new StackSet([frame], false));
            foreach (int id in masks.Uncertain)
            {
                if ((bitmask[id >> 5] & (1u << (id & 31))) == 0 && Survives(single, Vocabulary.BytesOf(id), scratch))
                {
                    bitmask[id >> 5] |= 1u << (id & 31);
                }
            }
        }

        if (set.Ended)
        {
            foreach (int id in Vocabulary.EndOfSequenceIds)
            {
                bitmask[id >> 5] |= 1u << (id & 31);
            }
        }

        if (Volatile.Read(ref _maskCount) < _maxCachedMasks && _masks.TryAdd(set, bitmask.ToArray()))
        {
            Interlocked.Increment(ref _maskCount);
        }
    }

    /// <summary>The stacks after the token's bytes; dead when a byte is refused.</summary>
    internal StackSet Advance(StackSet set, ReadOnlySpan<byte> bytes, StepScratch scratch)
    {
        foreach (byte b in bytes)
        {
            set = Step(set, b, scratch);
            if (set.IsDead)
            {
                break;
            }
        }

        return set;
    }

    /// <summary>The stacks after one more byte, from the memo when this set took the byte before.</summary>
    internal StackSet Step(StackSet set, byte value, StepScratch scratch)
    {
        var transitions = set.Transitions;
        if (transitions?[value] is { } known)
        {
            return known;
        }

        var next = Intern(Automaton.Step(set, value, scratch));
        if (ReferenceEquals(_interned.GetValueOrDefault(set), set))
        {
            transitions ??= Interlocked.CompareExchange(ref set.Transitions, new StackSet?[256], null) ?? set.Transitions!;
            transitions[value] = next;
        }

        return next;
    }

    /// <summary>The one instance of sets equal to <paramref name="set"/>, while the table has room.</summary>
    internal StackSet Intern(StackSet set)
    {
        if (set.IsDead)
        {
            return StackSet.Dead;
        }

        if (_interned.TryGetValue(set, out var existing))
        {
            return existing;
        }

        if (Volatile.Read(ref _internedCount) >= MaxInternedSets)
        {
            return set;
        }

        if (_interned.TryAdd(set, set))
        {
            Interlocked.Increment(ref _internedCount);
            return set;
        }

        return _interned[set];   // another thread interned an equal set meanwhile
    }

    private bool Survives(StackSet set, ReadOnlySpan<byte> bytes, StepScratch scratch) => !Advance(set, bytes, scratch).IsDead;

    private static void Or(Span<uint> into, uint[] bits)
    {
        for (int i = 0; i < into.Length; i++)
        {
            into[i] |= bits[i];
        }
    }

    internal StateMasks MasksOf(int state) => _stateMasks.GetOrAdd(state, s => new Lazy<StateMasks>(() => StateMasks.Compute(this, s))).Value;
}

/// <summary>The context-independent verdicts of every token from one automaton state (see <see cref="CompiledGrammar"/>).</summary>
internal sealed class StateMasks
{
    private StateMasks(uint[] accepted, int[] uncertain)
    {
        Accepted = accepted;
        Uncertain = uncertain;
    }

    /// <summary>Tokens allowed whatever lies below the state's frame.</summary>
    public uint[] Accepted { get; }

    /// <summary>Tokens that reach the end of the state's rule with bytes left: allowed or not by the frames below.</summary>
    public int[] Uncertain { get; }

    /// <summary>Walks the vocabulary's trie from a stack holding only <paramref name="state"/>.</summary>
    public static StateMasks Compute(CompiledGrammar grammar, int state)
    {
        var vocabulary = grammar.Vocabulary;
        var accepted = new uint[vocabulary.BitmaskWords];
        var uncertain = new List<int>();
        var scratch = new StepScratch();
        Walk(TokenVocabulary.Root, grammar.Intern(new StackSet([new Frame(state, null)], false)), false);
        return new StateMasks(accepted, [.. uncertain]);

        // `reached`: some path to this node ended the state's rule with bytes still to come.
        void Walk(int node, StackSet set, bool reached)
        {
            int children = vocabulary.ChildCount(node);
            for (int i = 0; i < children; i++)
            {
                var (b, child) = vocabulary.Child(node, i);
                var next = grammar.Step(set, b, scratch);
                bool childReached = reached || next.Ended;
                if (next.Stacks.Length == 0)
                {
                    if (!childReached)
                    {
                        continue;   // dead here and in every context: the whole subtree is refused
                    }

                    foreach (int id in vocabulary.EndingAt(child))
                    {
                        if (next.Ended)
                        {
                            Accept(id);
                        }
                        else
                        {
                            uncertain.Add(id);
                        }
                    }

                    uncertain.AddRange(vocabulary.Below(child));
                    continue;
                }

                foreach (int id in vocabulary.EndingAt(child))
                {
                    Accept(id);
                }

                Walk(child, next, childReached);
            }
        }

        void Accept(int id) => accepted[id >> 5] |= 1u << (id & 31);
    }
}
