namespace Celer.Grammars;

/// <summary>
/// Regular expressions as grammars: vLLM's <c>regex</c> structured output (the whole output must match) and JSON
/// Schema's <c>pattern</c> (a search: the pattern may match anywhere unless anchored). The syntax is the subset of
/// ECMAScript and Python <c>re</c> that <see cref="RegexGrammarParser"/> accepts, over Unicode code points.
/// </summary>
public static class RegexGrammar
{
    // The "any text" around an unanchored search pattern: one shared rule, however many patterns a schema has.
    private const string AnyTextRule = "regex-any-text";

    /// <summary>The grammar whose sentences are exactly the texts <paramref name="pattern"/> matches in full.</summary>
    public static Grammar Compile(string pattern)
    {
        var builder = new GrammarBuilder();
        return builder.Build(ToExpr(pattern, builder, fullMatch: true));
    }

    /// <summary>
    /// The texts <paramref name="pattern"/> matches: in full when <paramref name="fullMatch"/> (a leading '^' and
    /// trailing '$' change nothing), otherwise anywhere in them, as JSON Schema's <c>pattern</c>: a top-level
    /// alternative without a leading '^' may be preceded by any text and one without a trailing '$' followed by any.
    /// </summary>
    public static GrammarExpr ToExpr(string pattern, GrammarBuilder builder, bool fullMatch)
    {
        var branches = RegexGrammarParser.Parse(pattern);
        if (fullMatch)
        {
            return GrammarExpr.Choice(branches.Select(b => b.Body));
        }

        var anyText = AnyText(builder);
        GrammarExpr Around(GrammarExpr body, bool anchoredStart, bool anchoredEnd) =>
            GrammarExpr.Sequence(anchoredStart ? GrammarExpr.Empty : anyText, body, anchoredEnd ? GrammarExpr.Empty : anyText);

        // Branches anchored alike share one filler on each side, so "cat|dog" does not search the text twice.
        var first = branches[0];
        if (branches.All(b => b.AnchoredStart == first.AnchoredStart && b.AnchoredEnd == first.AnchoredEnd))
        {
            return Around(GrammarExpr.Choice(branches.Select(b => b.Body)), first.AnchoredStart, first.AnchoredEnd);
        }

        return GrammarExpr.Choice(branches.Select(b => Around(b.Body, b.AnchoredStart, b.AnchoredEnd)));
    }

    private static RuleRefExpr AnyText(GrammarBuilder builder) =>
        builder.TryGetRule(AnyTextRule, out int rule)
            ? new RuleRefExpr(rule)
            : builder.Rule(AnyTextRule, GrammarExpr.Star(Utf8Ranges.Any()));
}
