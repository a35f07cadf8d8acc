using System.Text;

namespace Celer.Grammars.Json;

/// <summary>
/// The keys an object's additional properties may have: any string except the names its schema declares (whose
/// values follow their own schemas and must not appear twice). Built as a trie over the declared names' code points:
/// at each node the next character either leaves the trie (then anything may follow) or follows one of its edges, and
/// the closing quote is allowed except where a declared name ends. Keys here are written without escapes, since
/// "n\u0061me" would spell a declared name in a way the trie cannot see.
/// </summary>
internal static class JsonPropertyNames
{
    /// <summary>A quoted key that is none of <paramref name="declared"/>.</summary>
    public static GrammarExpr Excluding(IEnumerable<string> declared, JsonSyntax syntax)
    {
        var root = new Node();
        // A name holding a character that needs an escape can never be written unescaped, so it needs no exclusion.
        foreach (string key in declared.Where(k => k.EnumerateRunes().All(r => r.Value >= 0x20 && r.Value != '"' && r.Value != '\\')))
        {
            var node = root;
            foreach (var rune in key.EnumerateRunes())
            {
                if (!node.Children.TryGetValue(rune, out var child))
                {
                    child = new Node();
                    node.Children.Add(rune, child);
                }

                node = child;
            }

            node.Terminal = true;
        }

        return GrammarExpr.Sequence(GrammarExpr.Literal("\""), Body(root, syntax.UnescapedTail));
    }

    // The rest of a key after reaching `node`, closing quote included.
    private static GrammarExpr Body(Node node, GrammarExpr rest)
    {
        var alternatives = new List<GrammarExpr>();
        if (!node.Terminal)
        {
            alternatives.Add(GrammarExpr.Literal("\""));
        }

        var leaving = new List<(int, int)> { (0, 0x1F), ('"', '"'), ('\\', '\\') };
        leaving.AddRange(node.Children.Keys.Select(r => (r.Value, r.Value)));
        alternatives.Add(GrammarExpr.Sequence(Utf8Ranges.Complement(leaving), rest));
        foreach (var (rune, child) in node.Children.OrderBy(c => c.Key))
        {
            alternatives.Add(GrammarExpr.Sequence(GrammarExpr.Literal(rune.ToString()), Body(child, rest)));
        }

        return GrammarExpr.Choice(alternatives);
    }

    private sealed class Node
    {
        public Dictionary<Rune, Node> Children { get; } = [];

        public bool Terminal { get; set; }
    }
}
