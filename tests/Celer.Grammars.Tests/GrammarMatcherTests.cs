using System.Text;
using Xunit;
using static Celer.Grammars.GrammarExpr;

namespace Celer.Grammars.Tests;

public class GrammarMatcherTests
{
    // A JSON-like language with recursion, non-ASCII strings, numbers and optional whitespace: enough rules, calls,
    // nullable parts and ends-of-rule inside tokens to exercise every case of the per-state mask cache.
    private static Grammar JsonLike()
    {
        var b = new GrammarBuilder();
        int value = b.Declare("value");
        var ws = b.Rule("ws", Repeat(new ByteSetExpr(ByteSet.Of((byte)' ').Union(ByteSet.Of((byte)'\n'))), 0, 4));
        var ch = Choice(Utf8Ranges.Complement([('"', '"'), ('\\', '\\'), (0, 0x1F)]), Sequence(Literal("\\"), new ByteSetExpr(ByteSet.Of((byte)'"').Union(ByteSet.Of((byte)'n')))));
        var str = b.Rule("string", Sequence(Literal("\""), Repeat(ch, 0, null), Literal("\"")));
        var digits = Plus(new ByteSetExpr(ByteSet.Range((byte)'0', (byte)'9')));
        var number = b.Rule("number", Sequence(Optional(Literal("-")), digits, Optional(Sequence(Literal("."), digits))));
        var member = Sequence(str, ws, Literal(":"), ws, Ref(value));
        var obj = b.Rule("object", Sequence(Literal("{"), ws, Optional(Sequence(member, Star(Sequence(ws, Literal(","), ws, member)))), ws, Literal("}")));
        var arr = b.Rule("array", Sequence(Literal("["), ws, Optional(Sequence(Ref(value), Star(Sequence(ws, Literal(","), ws, Ref(value))))), ws, Literal("]")));
        b.Define(value, Choice(obj, arr, str, number, Literal("true"), Literal("null")));
        return b.Build(Sequence(obj, ws));
    }

    [Theory]
    [InlineData("{}", true)]
    [InlineData("{ }", true)]
    [InlineData("{\"a\": [1, 2.5, {\"b\": \"é😀\"}], \"c\": null}\n", true)]
    [InlineData("{\"a\": [1, 2.5, {\"b\": \"x\\\"y\"}]}", true)]
    [InlineData("{\"a\": [1, 2.}", false)]
    [InlineData("{\"a\" 1}", false)]
    [InlineData("{\"a\": tru}", false)]
    [InlineData("[1]", false)]
    [InlineData("{\"a\": \"\u0001\"}", false)]
    [InlineData("{\"a\": 1,}", false)]
    [InlineData("{", false)]
    public void Matches_exactly_the_sentences(string text, bool expected) =>
        Assert.Equal(expected, GrammarAutomaton.Compile(JsonLike()).Matches(text));

    [Fact]
    public void Deep_nesting_matches_and_unbalanced_does_not()
    {
        var automaton = GrammarAutomaton.Compile(JsonLike());
        string deep = "{\"a\": " + new string('[', 200) + "1" + new string(']', 200) + "}";
        Assert.True(automaton.Matches(deep));
        Assert.False(automaton.Matches(deep[..^2] + "}"));
        Assert.True(automaton.IsPrefix(Encoding.UTF8.GetBytes(deep[..^2])));
    }

    [Fact]
    public void Left_recursion_is_refused_by_rule_name()
    {
        var b = new GrammarBuilder();
        int expr = b.Declare("expr");
        var maybeSpace = b.Rule("space", Optional(Literal(" ")));
        b.Define(expr, Choice(Sequence(maybeSpace, Ref(expr), Literal("+1")), Literal("1")));
        var e = Assert.Throws<GrammarException>(() => GrammarAutomaton.Compile(b.Build(Ref(expr))));
        Assert.Contains("'expr'", e.Message);
    }

    [Fact]
    public void Right_recursion_and_nullable_loops_terminate()
    {
        var b = new GrammarBuilder();
        int list = b.Declare("list");
        b.Define(list, Choice(Sequence(Literal("x"), Ref(list)), Empty));
        var automaton = GrammarAutomaton.Compile(b.Build(Sequence(Star(Optional(Ref(list))), Literal("."))));
        Assert.True(automaton.Matches(new string('x', 5000) + "."));
        Assert.True(automaton.Matches("."));
        Assert.False(automaton.Matches("xy."));
    }

    [Fact]
    public void Huge_bounded_repetition_is_refused()
    {
        var grammar = new GrammarBuilder().Build(Repeat(Utf8Ranges.Any(), 0, 1_000_000));
        var e = Assert.Throws<GrammarException>(() => GrammarAutomaton.Compile(grammar));
        Assert.Contains("too large", e.Message);
    }

    /// <summary>
    /// The mask against brute force, on real vocabularies: at every step of random walks through the grammar, a token
    /// is allowed iff feeding its bytes leaves a live stack (and the end of sequence iff the output is complete).
    /// </summary>
    [Theory]
    [InlineData("llama3", 1)]
    [InlineData("llama2", 2)]
    [InlineData("qwen3", 3)]
    public void Next_token_mask_equals_brute_force(string tokenizer, int seed)
    {
        var vocabulary = TestVocabularies.Vocabulary(tokenizer);
        var grammar = new CompiledGrammar(GrammarAutomaton.Compile(JsonLike()), vocabulary);
        var random = new Random(seed);
        var mask = new uint[vocabulary.BitmaskWords];
        for (int walk = 0; walk < 2; walk++)
        {
            var matcher = new GrammarMatcher(grammar);
            var text = new List<byte>();
            for (int step = 0; step < 16 && !matcher.IsTerminated; step++)
            {
                matcher.FillNextTokenBitmask(mask);
                var allowed = new List<int>();
                var scratch = new StepScratch();
                bool complete = grammar.Automaton.Matches(text.ToArray());
                for (int id = 0; id < vocabulary.VocabSize; id++)
                {
                    // Byte by byte from the stacks of the text so far, with no cache.
                    bool expected = vocabulary.EndOfSequenceIds.Contains(id)
                        ? complete
                        : !vocabulary.BytesOf(id).IsEmpty && !grammar.Advance(matcher.Current, vocabulary.BytesOf(id), scratch).IsDead;
                    bool actual = (mask[id >> 5] >> (id & 31) & 1) != 0;
                    Assert.True(expected == actual, $"{tokenizer} step {step} after '{Encoding.UTF8.GetString(text.ToArray())}': token {id} '{Encoding.UTF8.GetString(vocabulary.BytesOf(id))}' expected {expected}");
                    if (actual)
                    {
                        allowed.Add(id);
                    }
                }

                Assert.NotEmpty(allowed);
                int pick = allowed[random.Next(allowed.Count)];
                Assert.True(matcher.TryAccept(pick));
                text.AddRange(vocabulary.BytesOf(pick));
            }
        }
    }

    [Fact]
    public void Tokens_outside_the_grammar_are_refused_and_the_end_only_where_complete()
    {
        var vocabulary = TestVocabularies.Vocabulary("llama3");
        var tokenizer = TestVocabularies.Tokenizer("llama3");
        var matcher = new GrammarMatcher(new CompiledGrammar(GrammarAutomaton.Compile(JsonLike()), vocabulary));
        int[] ids = tokenizer.Encode("{\"name\": [1, 2]}", addSpecialTokens: false);
        Assert.False(matcher.TryAccept(tokenizer.Encode("[", addSpecialTokens: false)[0]));
        Assert.False(matcher.TryAccept(vocabulary.EndOfSequenceIds[0]));
        foreach (int id in ids)
        {
            Assert.False(matcher.IsComplete);
            Assert.True(matcher.TryAccept(id));
        }

        Assert.True(matcher.IsComplete);
        var mask = new uint[vocabulary.BitmaskWords];
        matcher.FillNextTokenBitmask(mask);
        int eos = vocabulary.EndOfSequenceIds[0];
        Assert.True((mask[eos >> 5] >> (eos & 31) & 1) != 0);
        Assert.True(matcher.TryAccept(eos));
        Assert.True(matcher.IsTerminated);
        Assert.False(matcher.TryAccept(ids[0]));
        matcher.FillNextTokenBitmask(mask);
        Assert.All(mask, w => Assert.Equal(0u, w));
    }
}
