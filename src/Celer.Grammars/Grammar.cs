namespace Celer.Grammars;

/// <summary>One named rule of a <see cref="Grammar"/>.</summary>
public sealed record GrammarRule(string Name, GrammarExpr Body);

/// <summary>
/// A context-free grammar over bytes: rules that refer to each other by index, and the root rule a whole output
/// must match. Built by <see cref="GrammarBuilder"/>; compiled for matching by <see cref="GrammarAutomaton"/>.
/// </summary>
public sealed class Grammar
{
    internal Grammar(IReadOnlyList<GrammarRule> rules, int root)
    {
        Rules = rules;
        Root = root;
    }

    public IReadOnlyList<GrammarRule> Rules { get; }

    public int Root { get; }

    /// <summary>The rules one per line, root first: for tests and error messages.</summary>
    public override string ToString() =>
        string.Join("\n", Enumerable.Range(0, Rules.Count).OrderBy(i => i != Root).Select(i => $"<{i}> {Rules[i].Name} ::= {Rules[i].Body}"));
}

/// <summary>
/// Builds a <see cref="Grammar"/>. A rule can be declared before its body is known (<see cref="Declare"/>), so
/// recursive definitions ($ref cycles, GBNF rules used before they are defined) refer to it by index.
/// </summary>
public sealed class GrammarBuilder
{
    private readonly List<string> _names = [];
    private readonly List<GrammarExpr?> _bodies = [];
    private readonly Dictionary<string, int> _byName = new(StringComparer.Ordinal);

    public int Count => _names.Count;

    /// <summary>A new rule without a body yet; a name already taken gets a numeric suffix.</summary>
    public int Declare(string name)
    {
        string unique = name;
        for (int n = 1; _byName.ContainsKey(unique); n++)
        {
            unique = $"{name}_{n}";
        }

        _byName[unique] = _names.Count;
        _names.Add(unique);
        _bodies.Add(null);
        return _names.Count - 1;
    }

    public void Define(int rule, GrammarExpr body)
    {
        ArgumentNullException.ThrowIfNull(body);
        if (_bodies[rule] is not null)
        {
            throw new InvalidOperationException($"Rule '{_names[rule]}' is already defined.");
        }

        _bodies[rule] = body;
    }

    /// <summary>Declares and defines a rule at once; returns a reference to it.</summary>
    public RuleRefExpr Rule(string name, GrammarExpr body)
    {
        int id = Declare(name);
        Define(id, body);
        return new RuleRefExpr(id);
    }

    public bool TryGetRule(string name, out int rule) => _byName.TryGetValue(name, out rule);

    public string NameOf(int rule) => _names[rule];

    public bool IsDefined(int rule) => _bodies[rule] is not null;

    /// <summary>The grammar with <paramref name="root"/> as its start; every declared rule must have a body.</summary>
    public Grammar Build(int root)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(root);
        ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual(root, _names.Count);
        var rules = new GrammarRule[_names.Count];
        for (int i = 0; i < rules.Length; i++)
        {
            rules[i] = new GrammarRule(_names[i], _bodies[i] ?? throw new GrammarException($"Rule '{_names[i]}' is used but never defined."));
        }

        return new Grammar(rules, root);
    }

    /// <summary>A grammar whose root is <paramref name="body"/>, with the rules declared so far.</summary>
    public Grammar Build(GrammarExpr body) => Build(Rule("root", body).Rule);
}
