using System.Text.Json;
using System.Text.RegularExpressions;
using Xunit;

namespace Celer.Grammars.Tests;

/// <summary>
/// GBNF grammars in the style of llama.cpp's examples accept what they should: checked on examples, against
/// System.Text.Json for a JSON grammar, and against .NET's regex for grammars that are regular. Malformed grammars are
/// a <see cref="GrammarException"/> that names the problem, its line and its column.
/// </summary>
public class GbnfGrammarTests
{
    private const string Arithmetic = """
        # Integer arithmetic; unary minus binds tightest.
        root   ::= expr
        expr   ::= term (ws [-+] ws term)*
        term   ::= factor (ws [*/] ws factor)*
        factor ::= number | "-" factor | "(" ws expr ws ")"
        number ::= [0-9]+
        ws     ::= [ \t]*
        """;

    // RFC 8259 JSON, whitespace around the value included.
    private const string Json = """
        root   ::= ws value ws
        value  ::= object | array | string | number | "true" | "false" | "null"
        object ::= "{" ws ( member ( ws "," ws member )* ws )? "}"
        member ::= string ws ":" ws value
        array  ::= "[" ws ( value ( ws "," ws value )* ws )? "]"
        string ::= "\"" ( [^"\\\x00-\x1F] | "\\" ( ["\\/bfnrt] | "u" [0-9a-fA-F]{4} ) )* "\""
        number ::= "-"? ( "0" | [1-9] [0-9]* ) ( "." [0-9]+ )? ( [eE] [-+]? [0-9]+ )?
        ws     ::= [ \t\n\r]*
        """;

    private const string List = """
        # a grammar for lists
        root ::= ("- " item)+
        item ::= [^\n]+ "\n"
        """;

    private const string Chess = """
        # Numbered moves, two to a line; groups may span lines.
        root ::= (
            # the first move is numbered 1
            "1. " move " " move "\n"

            # later ones get one or two digits
            ([1-9] [0-9]? ". " move " " move "\n")*
        )
        move   ::= (pawn | piece | castle) [+#]?
        pawn   ::= ([a-h] "x")? [a-h] [1-8] ("=" [NBRQ])?
        piece  ::= [NBKQR] [a-h]? [1-8]? "x"? [a-h] [1-8]
        castle ::= "O-O" "-O"?
        """;

    /// <summary>A regular GBNF grammar and the .NET regex for the same language.</summary>
    public static TheoryData<string, string> RegularCases => new()
    {
        { """root ::= [a-c]+ ("x" | "yz"){1,2} [^a-z]? .""", @"[a-c]+(x|yz){1,2}[^a-z]?[\s\S]" },
        {
            """
            root ::= greeting ", " name "!"?  # rules may come after their use
            greeting ::= "hello" | "hi" | "hey"{2}
            name ::= [A-Z] [a-z]{1,5}
            """,
            "(hello|hi|(hey){2}), [A-Z][a-z]{1,5}!?"
        },
        { """root ::= "\x41\u00e9\t" [\-\]\\a-c]* "\"" """, @"Aé\t[-\]\\a-c]*""" },
        { """root ::= ("ab" | "a")* "b"{0,2} | "" """, "(ab|a)*b{0,2}|" },
        { """root ::= [а-я]{2,} | "😀"+ | [^\x00-\x7F]""", @"[а-я]{2,}|😀+|[^\x00-\x7F]" },
        {
            """
            root ::= (
                "a" [0-9]{ 2 , 3 }
              | "b"+   # a comment inside the group
            ) "!" |
              "c"
            """,
            "(a[0-9]{2,3}|b+)!|c"
        },
    };

    [Theory]
    [InlineData("1+2*(3-4)", true)]
    [InlineData("-(5)", true)]
    [InlineData("12 * -3", true)]
    [InlineData("((7))", true)]
    [InlineData("--3", true)]
    [InlineData("1+", false)]
    [InlineData("(1", false)]
    [InlineData("1++2", false)]
    [InlineData("1 2", false)]
    [InlineData("", false)]
    public void Arithmetic_grammar(string text, bool expected)
    {
        Assert.Equal(expected, Automaton(Arithmetic).Matches(text));
    }

    [Theory]
    [InlineData("- milk\n- eggs\n", true)]
    [InlineData("- крупа 😀\n", true)]
    [InlineData("- milk", false)]
    [InlineData("-milk\n", false)]
    [InlineData("- \n", false)]
    [InlineData("", false)]
    public void List_grammar(string text, bool expected)
    {
        Assert.Equal(expected, Automaton(List).Matches(text));
    }

    [Theory]
    [InlineData("1. e4 e5\n2. Nf3 Nc6\n", true)]
    [InlineData("1. O-O-O Qxd8#\n", true)]
    [InlineData("1. exd5 e1=Q+\n10. Nbd2 O-O\n", true)]
    [InlineData("1. e9 e5\n", false)]
    [InlineData("1. e4\n", false)]
    [InlineData("2. e4 e5\n", false)]
    public void Chess_grammar_with_groups_over_several_lines(string text, bool expected)
    {
        Assert.Equal(expected, Automaton(Chess).Matches(text));
    }

    [Fact]
    public void Json_grammar_agrees_with_System_Text_Json()
    {
        var grammar = GbnfGrammar.Parse(Json);
        var random = new Random(20240611);
        var sentences = GrammarSamples.Sentences(grammar, random, 300);
        List<string> alphabet = [.. "{}[],:\"\\ 0123456789-+.eEtrufalsnbx\t\n".Select(c => c.ToString()), "é", "\u0001", "😀"];
        var strings = GrammarSamples.NearMisses(sentences, alphabet, random, mutations: 1500, randoms: 500, maxLength: 8);

        GrammarSamples.AssertAgrees(GrammarAutomaton.Compile(grammar), IsJson, strings, "JSON grammar");
    }

    [Theory]
    [MemberData(nameof(RegularCases))]
    public void Regular_grammar_agrees_with_dotnet_regex(string gbnf, string dotNetPattern)
    {
        var grammar = GbnfGrammar.Parse(gbnf);
        var reference = new Regex(GrammarSamples.ForDotNet($"^(?:{dotNetPattern})\\z"), RegexOptions.ECMAScript);
        var random = new Random(GrammarSamples.Seed(gbnf));
        var sentences = GrammarSamples.Sentences(grammar, random, 200);
        var strings = GrammarSamples.NearMisses(sentences, GrammarSamples.Alphabet(gbnf), random, mutations: 400, randoms: 300, maxLength: 10);

        GrammarSamples.AssertAgrees(GrammarAutomaton.Compile(grammar), s => reference.IsMatch(GrammarSamples.ForDotNet(s)), strings.Where(GrammarSamples.DotNetCanJudge), "GBNF " + gbnf);
    }

    [Fact]
    public void String_and_class_escapes()
    {
        var automaton = Automaton("""root ::= "\x41\u00e9\U0001F600\t\n\r\\\"\[\]\-" [\x00-\x1F\-\]\\a-]+""");
        Assert.True(automaton.Matches("Aé😀\t\n\r\\\"[]-" + "-]\\a\u0001"));
        Assert.False(automaton.Matches("Aé😀\t\n\r\\\"[]-" + "b"));
        Assert.False(automaton.Matches("Aé😀\t\n\r\\\"[]-"));
    }

    [Fact]
    public void Dot_and_negated_class_are_over_code_points()
    {
        var automaton = Automaton("""root ::= . [^\n"]""");
        Assert.True(automaton.Matches("\n😀"));
        Assert.True(automaton.Matches("😀я"));
        Assert.False(automaton.Matches("a\n"));
        Assert.False(automaton.Matches("a\""));
        Assert.False(automaton.Matches("😀"));
    }

    [Fact]
    public void Recursive_rule_used_before_it_is_defined()
    {
        var automaton = Automaton("root ::= pair*\npair ::= \"(\" root \")\"");
        Assert.True(automaton.Matches("(()())()"));
        Assert.True(automaton.Matches(""));
        Assert.False(automaton.Matches("(()"));
        Assert.False(automaton.Matches(")("));
    }

    [Fact]
    public void Empty_alternatives_and_strings()
    {
        var automaton = Automaton("root ::= | \"a\" \"\" x\nx ::=\n");
        Assert.True(automaton.Matches(""));
        Assert.True(automaton.Matches("a"));
        Assert.False(automaton.Matches("aa"));
    }

    [Fact]
    public void Repetition_bounds()
    {
        var automaton = Automaton("root ::= \"a\"{2} \"b\"{1,} (\"c\" \"d\"){0,2}");
        Assert.True(automaton.Matches("aab"));
        Assert.True(automaton.Matches("aabbbcdcd"));
        Assert.False(automaton.Matches("ab"));
        Assert.False(automaton.Matches("aaab"));
        Assert.False(automaton.Matches("aa"));
        Assert.False(automaton.Matches("aabcdcdcd"));
        Assert.False(automaton.Matches("aabc"));
    }

    [Fact]
    public void Names_line_endings_and_comments()
    {
        var grammar = GbnfGrammar.Parse("# heading\r\nrule_1 ::= \"x\" # trailing\r\n\r\nroot ::= rule_1 Rule-2 |\r\n  \"z\"\r\nRule-2 ::= [y]");
        Assert.Equal("root", grammar.Rules[grammar.Root].Name);
        var automaton = GrammarAutomaton.Compile(grammar);
        Assert.True(automaton.Matches("xy"));
        Assert.True(automaton.Matches("z"));
        Assert.False(automaton.Matches("x"));
    }

    [Theory]
    [InlineData("root ::= \"a\"\nroot ::= \"b\"", "line 2, column 1: rule 'root' is defined twice (first at line 1, column 1)")]
    [InlineData("root ::= item", "line 1, column 10: rule 'item' is used but never defined")]
    [InlineData("root ::= \"a\"\n# comment\nx ::= y", "line 3, column 7: rule 'y' is used but never defined")]
    [InlineData("item ::= \"a\"", "no 'root' rule")]
    [InlineData("", "no 'root' rule")]
    [InlineData("root ::= <think> \"x\"", "line 1, column 10: token reference '<think>' is not supported")]
    [InlineData("root ::= \"a\" <[123]>", "token reference '<[123]>'")]
    [InlineData("root ::= !<[7]> \"a\"", "token reference '!<[7]>'")]
    [InlineData("root ::= \"abc", "line 1, column 10: unterminated string")]
    [InlineData("root ::= [abc", "unterminated character class")]
    [InlineData("root ::= (\"a\" | \"b\"", "line 1, column 10: unbalanced '('")]
    [InlineData("root ::= (\"a\" ; \"b\")", "expected ')' to close the '(' at line 1, column 10, found ';'")]
    [InlineData("root ::= \"a\")", "line 1, column 13: unbalanced ')'")]
    [InlineData("root = \"a\"", "expected '::=' after rule name 'root', found '='")]
    [InlineData("ro.ot ::= \"a\"", "expected '::=' after rule name 'ro', found '.'")]
    [InlineData("::= \"a\"", "expected a rule name, found ':'")]
    [InlineData("root ::= \"a\"\n  | \"b\"", "line 2, column 3: expected a rule name, found '|'")]
    [InlineData("root ::= \"a\" ; \"b\"", "unexpected ';' in rule 'root'")]
    [InlineData("root ::= \"\\q\"", "unknown escape '\\q'")]
    [InlineData("root ::= \"\\x4\"", "malformed '\\x' escape (expected 2 hex digits)")]
    [InlineData("root ::= [\\u12]", "malformed '\\u' escape (expected 4 hex digits)")]
    [InlineData("root ::= \"\\U00110000\"", "'\\U00110000' is not a Unicode scalar value")]
    [InlineData("root ::= \"\\uD800\"", "'\\uD800' is not a Unicode scalar value")]
    [InlineData("root ::= \"a\\", "lone '\\'")]
    [InlineData("root ::= *\"a\"", "line 1, column 10: quantifier '*' has nothing to repeat")]
    [InlineData("root ::= \"a\"{3,2}", "repetition '{3,2}' has its maximum below its minimum")]
    [InlineData("root ::= \"a\"{10001}", "'{10001}' is above the limit of 10000")]
    [InlineData("root ::= \"a\"{x}", "expected a number after '{', found 'x'")]
    [InlineData("root ::= \"a\"{2,3", "expected '}' to close the repetition at line 1, column 13")]
    [InlineData("root ::= []", "empty character class '[]'")]
    [InlineData("root ::= [^]", "empty character class '[^]'")]
    [InlineData("root ::= [z-a]", "range 'z-a' is out of order")]
    public void Malformed_grammar_is_a_clear_error(string gbnf, string expectedMessagePart)
    {
        var e = Assert.Throws<GrammarException>(() => GbnfGrammar.Parse(gbnf));
        Assert.Contains(expectedMessagePart, e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Nesting_is_limited_so_a_hostile_grammar_cannot_overflow_the_stack()
    {
        Assert.True(Automaton("root ::= " + new string('(', 200) + "\"a\"" + new string(')', 200)).Matches("a"));
        var e = Assert.Throws<GrammarException>(() => GbnfGrammar.Parse("root ::= " + new string('(', 100_000)));
        Assert.Contains("line 1, column 210: parentheses nest deeper than 200", e.Message, StringComparison.Ordinal);
    }

    private static GrammarAutomaton Automaton(string gbnf) => GrammarAutomaton.Compile(GbnfGrammar.Parse(gbnf));

    private static bool IsJson(string text)
    {
        try
        {
            using (JsonDocument.Parse(text))
            {
                return true;
            }
        }
        catch (JsonException)
        {
            return false;
        }
    }
}
