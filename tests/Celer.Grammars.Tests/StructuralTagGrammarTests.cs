using System.Text.Json.Nodes;
using Celer.Grammars.Json;
using Xunit;

namespace Celer.Grammars.Tests;

public class StructuralTagGrammarTests
{
    private const string Tag = """
        {"structures": [
           {"begin": "<function=get_weather>", "schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}, "end": "</function>"},
           {"begin": "<function=get_time>", "schema": {"type": "object", "properties": {"utc": {"type": "boolean"}}, "required": ["utc"]}, "end": "</function>"},
           {"begin": "@@call", "schema": {"type": "integer", "minimum": 0, "maximum": 9}, "end": "@@"}],
         "triggers": ["<function=", "@@"]}
        """;

    private static GrammarAutomaton Compile(string tag = Tag) =>
        GrammarAutomaton.Compile(StructuralTagGrammar.Compile(JsonNode.Parse(tag)!, new JsonGrammarOptions { AnyWhitespace = false }));

    [Theory]
    [InlineData("", true)]
    [InlineData("Plain text, even < and = and @ alone, é😀.", true)]
    [InlineData("Let me check. <function=get_weather>{\"city\": \"Paris\"}</function> Done.", true)]
    [InlineData("<function=get_time>{\"utc\": true}</function><function=get_weather>{\"city\": \"\"}</function>", true)]
    [InlineData("x @@call7@@ y", true)]
    [InlineData("text ending in a trigger's start <function", true)]
    [InlineData("<function=get_weather>{\"city\": 5}</function>", false)]
    [InlineData("<function=get_weather>{\"city\": \"Paris\"}", false)]
    [InlineData("<function=other>{}</function>", false)]
    [InlineData("a <function= b", false)]
    [InlineData("x @@call12@@", false)]
    [InlineData("x @@ y", false)]
    [InlineData("<<function=get_time>{\"utc\": false}</function>", true)]
    [InlineData("<functio<function=get_time>{\"utc\": false}</function>", true)]
    public void Free_text_with_triggers_only_as_valid_structures(string text, bool expected) =>
        Assert.Equal(expected, Compile().Matches(text));

    /// <summary>Random text over the triggers' own characters is a sentence exactly when no trigger occurs in it.</summary>
    [Fact]
    public void Text_without_a_trigger_is_free()
    {
        var automaton = Compile("""{"structures": [{"begin": "<f=", "schema": {"type": "null"}, "end": ">"}], "triggers": ["<f="]}""");
        var random = new Random(5);
        const string Alphabet = "<f=> a";
        int withTrigger = 0;
        for (int i = 0; i < 3000; i++)
        {
            string text = new([.. Enumerable.Range(0, random.Next(0, 30)).Select(_ => Alphabet[random.Next(Alphabet.Length)])]);
            bool hasTrigger = text.Contains("<f=", StringComparison.Ordinal);
            withTrigger += hasTrigger ? 1 : 0;
            Assert.True(automaton.Matches(text) == !hasTrigger, text);
            Assert.True(automaton.Matches(text.Replace("<f=", "<f=null>", StringComparison.Ordinal)), text);
        }

        Assert.InRange(withTrigger, 100, 2900);
    }

    [Theory]
    [InlineData("""{"structures": [{"begin": "<a>", "schema": {}, "end": "</a>"}]}""", "'triggers'")]
    [InlineData("""{"structures": [], "triggers": ["<a"]}""", "'structures'")]
    [InlineData("""{"structures": [{"begin": "<b>", "schema": {}, "end": "</b>"}], "triggers": ["<a"]}""", "starts with no trigger")]
    [InlineData("""{"structures": [{"begin": "<a>", "end": "</a>"}], "triggers": ["<a"]}""", "'schema'")]
    [InlineData("""{"structures": [{"begin": "<a>", "schema": {"not": {}}, "end": "</a>"}], "triggers": ["<a"]}""", "'not'")]
    [InlineData("""{"structures": [{"begin": "<ab>", "schema": {}, "end": "</a>"}], "triggers": ["<a", "<ab"]}""", "inside another trigger")]
    public void Malformed_tags_are_refused_naming_the_cause(string tag, string named)
    {
        var e = Assert.Throws<GrammarException>(() => Compile(tag));
        Assert.Contains(named, e.Message, StringComparison.Ordinal);
    }
}
