using Xunit;

namespace Celer.Grammars.Tests;

/// <summary>
/// Grammars in Lark's notation, read as vLLM reads them (no '::=' line: Lark; rules, '|' alternatives, single quotes,
/// comments, the 'start' rule or the first as root) and then as GBNF: what they accept, the GBNF they become, and the
/// refusals that name the problem.
/// </summary>
public class LarkGrammarTests
{
    // vLLM's documentation's SQL example, in Lark's notation.
    private const string Sql = """
        ?start: select_statement
        select_statement: "SELECT " column " from " table " where " condition
        column: "col_1" | "col_2"
        table: "table_1"
             | "table_2"   // an alternative on its own line
        condition: column " = " number
        number: '1' | '2'  # single quotes are strings too
        """;

    [Theory]
    [InlineData("SELECT col_1 from table_2 where col_2 = 1", true)]
    [InlineData("SELECT col_2 from table_1 where col_1 = 2", true)]
    [InlineData("SELECT col_3 from table_1 where col_1 = 2", false)]
    [InlineData("SELECT col_1 from table_1 where col_1 = 3", false)]
    [InlineData("SELECT col_1 from table_1", false)]
    public void A_Lark_grammar_accepts_what_its_start_rule_derives(string text, bool accepted)
    {
        Assert.True(LarkGrammar.IsLikelyLark(Sql));
        Assert.Equal(accepted, GrammarAutomaton.Compile(LarkGrammar.Parse(Sql)).Matches(text));
    }

    [Fact]
    public void The_GBNF_it_becomes_is_vLLMs()
    {
        Assert.Equal("root ::= greeting\ngreeting ::= \"hello\" | \"hi\" name\nname ::= \" bob\"\n",
            LarkGrammar.ToGbnf("greeting: 'hello'\n    | 'hi' name\nname: \" bob\"\n"));
        // 'start' is the root wherever it is; a rule already named root is not wrapped again.
        Assert.StartsWith("root ::= start\n", LarkGrammar.ToGbnf("a: \"x\"\nstart: a a\n"), StringComparison.Ordinal);
        Assert.Equal("root ::= \"x\"\n", LarkGrammar.ToGbnf("root: 'x'"));
        Assert.False(LarkGrammar.IsLikelyLark("root ::= \"a\"  # GBNF"));
        Assert.True(LarkGrammar.IsLikelyLark("start: \"a\"  # a comment with ::= is no rule"));
    }

    [Theory]
    [InlineData("| \"a\"", "an alternative '|' with no rule before it")]
    [InlineData("start: \"a\"\n\"b\"", "line 2: '\"b\"' is neither a rule")]
    [InlineData("# nothing here", "has no rules")]
    [InlineData("start: /[a-z]+/", "read as Lark (it has no '::=' rule) and converted to GBNF, is not valid")]
    [InlineData("start: word\nword: \"a\" other", "is used but never defined")]
    public void What_the_reading_cannot_take_is_refused_naming_it(string grammar, string fragment)
    {
        var e = Assert.Throws<GrammarException>(() => LarkGrammar.Parse(grammar));
        Assert.Contains(fragment, e.Message, StringComparison.Ordinal);
    }
}
