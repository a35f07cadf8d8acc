using System.Text;
using System.Text.RegularExpressions;

namespace Celer.Grammars;

/// <summary>
/// A <c>grammar</c> written in Lark's notation, read as vLLM reads it before it hands the grammar to XGrammar
/// (vLLM's structured-output utilities: a grammar with no <c>::=</c> line is Lark's): each <c>name: expansion</c> line
/// defines a rule (Lark's leading <c>?</c> on a name is dropped), a line starting with <c>|</c> adds an alternative to
/// the rule above it, <c>#</c> and <c>//</c> start comments, single-quoted strings become double-quoted ones, and the
/// output must match the rule named <c>start</c>, else the first rule. The result is read as GBNF
/// (<see cref="GbnfGrammar"/>), so Lark's own terminal syntax (<c>/regex/</c>), directives (<c>%import</c>,
/// <c>%ignore</c>) and templates, which that reading does not convert, are refused as GBNF refuses them. Unlike vLLM, a
/// line that is neither a rule nor an alternative is refused rather than dropped.
/// </summary>
public static partial class LarkGrammar
{
    /// <summary>vLLM's test: no line, comments removed, holds GBNF's <c>::=</c>.</summary>
    public static bool IsLikelyLark(string text) => Lines(text).All(line => !line.Contains("::=", StringComparison.Ordinal));

    public static Grammar Parse(string text)
    {
        string gbnf = ToGbnf(text);
        try
        {
            return GbnfGrammar.Parse(gbnf);
        }
        catch (GrammarException e)
        {
            throw new GrammarException($"The grammar, read as Lark (it has no '::=' rule) and converted to GBNF, is not valid: {e.Message} GBNF:\n{gbnf}");
        }
    }

    /// <summary>The GBNF grammar vLLM's conversion makes of <paramref name="text"/>: <c>root ::= start</c> (or the first rule), then the rules.</summary>
    public static string ToGbnf(string text)
    {
        var rules = new List<(string Name, List<string> Alternatives)>();
        int lineNumber = 0;
        foreach (string line in Lines(text))
        {
            lineNumber++;
            if (line.Length == 0)
            {
                continue;
            }

            if (line.StartsWith('|'))
            {
                if (rules.Count == 0)
                {
                    throw new GrammarException($"Lark grammar, line {lineNumber}: an alternative '|' with no rule before it.");
                }

                rules[^1].Alternatives.Add(DoubleQuoted(line[1..].Trim()));
                continue;
            }

            int colon = line.IndexOf(':', StringComparison.Ordinal);
            if (colon < 0)
            {
                throw new GrammarException($"Lark grammar, line {lineNumber}: '{line}' is neither a rule ('name: expansion') nor an alternative ('| expansion').");
            }

            string name = line[..colon].Trim().Trim('?');
            rules.Add((name, [DoubleQuoted(line[(colon + 1)..].Trim())]));
        }

        if (rules.Count == 0)
        {
            throw new GrammarException("Lark grammar has no rules.");
        }

        string root = rules.Any(r => r.Name == "start") ? "start" : rules[0].Name;
        var gbnf = new StringBuilder();
        if (root != "root")
        {
            gbnf.Append("root ::= ").Append(root).Append('\n');
        }

        foreach ((string name, List<string> alternatives) in rules)
        {
            gbnf.Append(name).Append(" ::= ").Append(string.Join(" | ", alternatives)).Append('\n');
        }

        return gbnf.ToString();
    }

    /// <summary>The lines with vLLM's comment rule applied (everything from the first '#' or '//'), trimmed.</summary>
    private static IEnumerable<string> Lines(string text) =>
        text.Split('\n').Select(line => Comment().Replace(line, "").Trim());

    private static string DoubleQuoted(string expansion) => SingleQuoted().Replace(expansion, "\"$1\"");

    [GeneratedRegex("(#|//).*$")]
    private static partial Regex Comment();

    [GeneratedRegex("'([^']*)'")]
    private static partial Regex SingleQuoted();
}
