using System.Globalization;
using System.Text;
using System.Text.RegularExpressions;
using Xunit;

namespace Celer.Grammars.Tests;

/// <summary>
/// Regular expressions compiled to grammars agree with .NET's regex engine, the independent reference, on random
/// near-miss strings; every refused construct is a <see cref="GrammarException"/> that names it and its offset.
/// </summary>
public class RegexGrammarTests
{
    // ECMAScript's \s (WhiteSpace and LineTerminator) spelled out for .NET, whose ECMAScript mode makes \s ASCII only.
    private const string DotNetSpace = @"\t\n\v\f\r \u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\ufeff";

    /// <summary>A pattern, and .NET's spelling of the same language where .NET's syntax or meaning differs.</summary>
    public static TheoryData<string, string?> FullMatchCases => new()
    {
        { "[а-я]+", null },
        { @"""(?:[^""\\]|\\.)*""", null },
        { @"[^""\\]{2,5}", null },
        { "😀+|🙃{2}", null },
        { "[😀-🙃]+x[^😀]", null },
        { ".{1,3}", null },
        { "a{3}", null },
        { "a{2,}b{0,1}", null },
        { "(ab){1,3}c?", null },
        { "x{0,2}y{2,4}z{3,}", null },
        { "[a-c]{0,3}(x|yz){2,3}", null },
        { "(cat|dog|bird)s?", null },
        { "((a|b)(c|d)?)+e", null },
        { "(a(b(c|)|d)*)?e", null },
        { "(a|b*)*c", null },
        { "a|b|", null },
        { "()(|a)b", null },
        { "a+?b*?c??d{1,2}?e{2,}?", null },
        { @"[a-z]*+,\d++x?+y{2}+", @"(?>[a-z]*),(?>\d+)(?>x?)(?>y{2})" },
        { @"\d{3}-\d{4}", null },
        { @"\w+@\w+\.(com|org)", null },
        { @"[\w.-]+", null },
        { @"[^a-z\d]+", null },
        { @"\D\W+\d", null },
        { @"(?<year>\d{4})-(?P<month>0[1-9]|1[0-2])", @"(?<year>\d{4})-(?<month>0[1-9]|1[0-2])" },
        { @"-?(0|[1-9]\d*)(\.\d+)?([eE][+-]?\d+)?", null },
        { @"\x41\u0042[\x30-\x39é]", null },
        { @"\u00e9{2}[\u0400-\u04ff]", null },
        { @"é|e\u0301", null },
        { @"[\s\S]\S\s*", $"[\\s\\S][^{DotNetSpace}][{DotNetSpace}]*" },
        { @"[^\s""]+", $"[^{DotNetSpace}\"]+" },
        { @"[\]\[\-^]+[-a][a-]", null },
        { "{foo}|a{,|x}", null },
        { @"\.\*\+\?\(\)\[\]\{\}\|\\\/\^\$", null },
        { @"[^\n]*\n.*", null },
        { @"\t\n\r\f\v\0+", null },
        { "^abc$|^x", "abc|x" },
    };

    /// <summary>JSON Schema's unanchored patterns; .NET's '$' also matches before a final newline, so the reference says \z.</summary>
    public static TheoryData<string, string?> SearchCases => new()
    {
        { "ab", null },
        { "^ab", null },
        { "ab$", @"ab\z" },
        { "^ab$", @"^ab\z" },
        { "^a|b$", @"^a|b\z" },
        { "cat|^dog", null },
        { "[0-9]{3}", null },
        { @"^[^""\\]{2}", null },
        { "é+$", @"é+\z" },
        { "😀{2}", null },
    };

    [Theory]
    [MemberData(nameof(FullMatchCases))]
    public void Full_match_agrees_with_dotnet_regex(string pattern, string? dotNetPattern)
    {
        var grammar = RegexGrammar.Compile(pattern);
        var reference = DotNetRegex($"^(?:{dotNetPattern ?? pattern})\\z");
        var random = new Random(GrammarSamples.Seed(pattern));
        var alphabet = GrammarSamples.Alphabet(pattern);
        var sentences = GrammarSamples.Sentences(grammar, random, 200);
        var strings = GrammarSamples.NearMisses(sentences, alphabet, random, mutations: 400, randoms: 300, maxLength: 12);

        GrammarSamples.AssertAgrees(GrammarAutomaton.Compile(grammar), s => reference.IsMatch(GrammarSamples.ForDotNet(s)), strings.Where(GrammarSamples.DotNetCanJudge), $"/{pattern}/");
    }

    [Theory]
    [MemberData(nameof(SearchCases))]
    public void Search_agrees_with_dotnet_regex(string pattern, string? dotNetPattern)
    {
        var builder = new GrammarBuilder();
        var grammar = builder.Build(RegexGrammar.ToExpr(pattern, builder, fullMatch: false));
        var reference = DotNetRegex(dotNetPattern ?? pattern);
        var random = new Random(GrammarSamples.Seed(pattern));
        var alphabet = GrammarSamples.Alphabet(pattern);
        // Texts that contain a match: full matches, alone (for anchored patterns) and with random text around them.
        var fullMatches = GrammarSamples.Sentences(RegexGrammar.Compile(pattern), random, 200);
        var sentences = fullMatches.Concat(fullMatches.Select(s => GrammarSamples.RandomText(alphabet, random, 4) + s + GrammarSamples.RandomText(alphabet, random, 4))).ToList();
        var strings = GrammarSamples.NearMisses(sentences, alphabet, random, mutations: 400, randoms: 300, maxLength: 10);

        GrammarSamples.AssertAgrees(GrammarAutomaton.Compile(grammar), s => reference.IsMatch(GrammarSamples.ForDotNet(s)), strings.Where(GrammarSamples.DotNetCanJudge), $"search /{pattern}/");
    }

    [Fact]
    public void Dot_matches_every_code_point_but_newline()
    {
        var dot = GrammarAutomaton.Compile(RegexGrammar.Compile("."));
        foreach (int cp in EveryBmpScalarAndSomeAstral())
        {
            Assert.True(dot.Matches(char.ConvertFromUtf32(cp)) == (cp != '\n'), $"'.' on U+{cp:X4}");
        }

        Assert.False(dot.Matches("ab"));
        Assert.False(dot.Matches(""));
    }

    [Theory]
    [InlineData(@"\d")]
    [InlineData(@"\D")]
    [InlineData(@"\w")]
    [InlineData(@"\W")]
    [InlineData(@"\s")]
    [InlineData(@"\S")]
    [InlineData(@"[\s\d]")]
    [InlineData(@"[^\s\d]")]
    public void Class_shorthands_have_their_ECMAScript_meanings(string pattern)
    {
        var automaton = GrammarAutomaton.Compile(RegexGrammar.Compile(pattern));
        foreach (int cp in EveryBmpScalarAndSomeAstral())
        {
            bool digit = cp is >= '0' and <= '9';
            bool word = cp < 128 && (char.IsAsciiLetterOrDigit((char)cp) || cp == '_');
            // ECMA-262 WhiteSpace (TAB, VT, FF, ZWNBSP, any Zs) and LineTerminator (LF, CR, LS, PS).
            bool space = cp is '\t' or '\v' or '\f' or 0xFEFF or '\n' or '\r' or 0x2028 or 0x2029
                || CharUnicodeInfo.GetUnicodeCategory(cp) == UnicodeCategory.SpaceSeparator;
            bool expected = pattern switch
            {
                @"\d" => digit,
                @"\D" => !digit,
                @"\w" => word,
                @"\W" => !word,
                @"\s" => space,
                @"\S" => !space,
                @"[\s\d]" => space || digit,
                _ => !(space || digit),
            };
            Assert.True(automaton.Matches(char.ConvertFromUtf32(cp)) == expected, $"{pattern} on U+{cp:X4}: expected {expected}");
        }
    }

    [Theory]
    [InlineData(@"\u{1F600}+", "😀😀", true)]
    [InlineData(@"\u{1F600}+", "😁", false)]
    [InlineData(@"\u{41}\u{e9}", "Aé", true)]
    [InlineData(@"\uD83D\uDE00", "😀", true)]
    [InlineData(@"\uD83D\uDE00", "😁", false)]
    [InlineData(@"[\u{1F600}-\u{1F64F}]{2}", "🙃😀", true)]
    [InlineData(@"[\u{1F600}-\u{1F64F}]{2}", "🙃🚀", false)]
    [InlineData(@"[\uD83D\uDE00-\uD83D\uDE4F]", "🙂", true)]
    [InlineData(@"[\b]", "\b", true)]
    [InlineData(@"(?P<word>\w+) (?<n>\d)", "ab 7", true)]
    [InlineData("^abc$", "abc", true)]
    [InlineData("^abc$", "abc\n", false)]
    [InlineData("", "", true)]
    [InlineData("", "a", false)]
    public void Full_match_examples(string pattern, string text, bool expected)
    {
        Assert.Equal(expected, GrammarAutomaton.Compile(RegexGrammar.Compile(pattern)).Matches(text));
    }

    [Theory]
    [InlineData("b", "abc", true)]
    [InlineData("^b", "abc", false)]
    [InlineData("b$", "abc", false)]
    [InlineData("c$", "abc", true)]
    [InlineData("", "anything at all 😀", true)]
    [InlineData("x*", "", true)]
    [InlineData("^$", "", true)]
    [InlineData("^$", "a", false)]
    public void Search_examples(string pattern, string text, bool expected)
    {
        var builder = new GrammarBuilder();
        var grammar = builder.Build(RegexGrammar.ToExpr(pattern, builder, fullMatch: false));
        Assert.Equal(expected, GrammarAutomaton.Compile(grammar).Matches(text));
    }

    [Fact]
    public void Character_class_is_one_byte_level_expression()
    {
        var builder = new GrammarBuilder();
        Assert.IsType<ByteSetExpr>(RegexGrammar.ToExpr("[a-z_0-9]", builder, fullMatch: true));
        // Tens of nodes for classes of thousands or a million code points, not a choice per code point.
        Assert.InRange(NodeCount(RegexGrammar.ToExpr("[а-я]", builder, fullMatch: true)), 1, 8);
        Assert.InRange(NodeCount(RegexGrammar.ToExpr(@"[^""\\]", builder, fullMatch: true)), 1, 40);
        Assert.InRange(NodeCount(RegexGrammar.ToExpr(@"\S", builder, fullMatch: true)), 1, 120);
    }

    [Fact]
    public void Bounded_repetition_stays_one_repeat()
    {
        var expr = RegexGrammar.ToExpr(@"\w{1000,2000}", new GrammarBuilder(), fullMatch: true);
        var repeat = Assert.IsType<RepeatExpr>(expr);
        Assert.Equal((1000, 2000), (repeat.Min, repeat.Max));
        Assert.IsType<ByteSetExpr>(repeat.Item);
    }

    [Fact]
    public void Search_patterns_share_one_any_text_rule()
    {
        var builder = new GrammarBuilder();
        RegexGrammar.ToExpr("a", builder, fullMatch: false);
        RegexGrammar.ToExpr("^b|c$", builder, fullMatch: false);
        Assert.Equal(1, builder.Count);
        RegexGrammar.ToExpr("d", builder, fullMatch: true);
        Assert.Equal(1, builder.Count);
    }

    [Theory]
    [InlineData(@"(a)\1", @"backreference '\1'")]
    [InlineData(@"(?<n>a)\k<n>", @"backreference '\k<name>'")]
    [InlineData("(?P<n>a)(?P=n)", "backreference '(?P=name)'")]
    [InlineData("a(?=b)", "offset 1: lookahead '(?='")]
    [InlineData("a(?!b)", "negative lookahead '(?!'")]
    [InlineData("(?<=a)b", "lookbehind '(?<='")]
    [InlineData("(?<!a)b", "negative lookbehind '(?<!'")]
    [InlineData(@"\bword", @"offset 0: word boundary '\b'")]
    [InlineData(@"a\Bb", @"offset 1: word boundary '\B'")]
    [InlineData(@"\p{L}+", @"Unicode property '\p'")]
    [InlineData(@"x\P{Lu}", @"offset 1: Unicode property '\P'")]
    [InlineData("(?i)abc", "inline flags '(?i'")]
    [InlineData("(?s:a.b)", "inline flags '(?s'")]
    [InlineData("(?x)a", "inline flags '(?x'")]
    [InlineData("(?>a+)b", "atomic group '(?>'")]
    [InlineData("a(?#note)b", "comment group '(?#'")]
    [InlineData("(a)(?(1)b|c)", "offset 3: conditional group '(?('")]
    [InlineData("(?Q)", "group construct '(?Q'")]
    [InlineData("(ab", "offset 0: unbalanced '('")]
    [InlineData("a(b(c)", "offset 1: unbalanced '('")]
    [InlineData("ab)", "offset 2: unbalanced ')'")]
    [InlineData("a|b)|c", "offset 3: unbalanced ')'")]
    [InlineData("*a", "offset 0: quantifier '*' has nothing to repeat")]
    [InlineData("a|+b", "offset 2: quantifier '+' has nothing to repeat")]
    [InlineData("(?:?a)", "quantifier '?' has nothing to repeat")]
    [InlineData("{2}a", "quantifier '{2}' has nothing to repeat")]
    [InlineData("a{3,2}", "offset 1: repetition '{3,2}' has its maximum below its minimum")]
    [InlineData("a{10001}", "'{10001}' is above the limit of 10000")]
    [InlineData("a{1,99999999999}", "is above the limit of 10000")]
    [InlineData("a**", "offset 2: nested quantifier '*'")]
    [InlineData("a{2}{3}", "nested quantifier '{3}'")]
    [InlineData("a*?+", "nested quantifier '+'")]
    [InlineData("a{,3}", "'{,3}' means {0,m} in Python")]
    [InlineData("x[abc", "offset 1: unterminated character class")]
    [InlineData("[z-a]", "range 'z-a' is out of order")]
    [InlineData("[]a]", "empty character class '[]'")]
    [InlineData("[^]", "empty character class '[^]'")]
    [InlineData(@"[\d-z]", @"range '\d-z' has a class shorthand")]
    [InlineData(@"[a-\w]", @"range 'a-\w' has a class shorthand")]
    [InlineData("[[:alpha:]]", "POSIX class '[:alpha:]'")]
    [InlineData("a^b", "offset 1: anchor '^'")]
    [InlineData("(^a)", "anchor '^'")]
    [InlineData("a|b^", "anchor '^'")]
    [InlineData("a$b", "offset 1: anchor '$'")]
    [InlineData("(a$)", "anchor '$'")]
    [InlineData("a$$", "anchor '$'")]
    [InlineData(@"\Aabc", @"anchor '\A'")]
    [InlineData(@"abc\Z", @"anchor '\Z'")]
    [InlineData(@"\q", @"unknown escape '\q'")]
    [InlineData(@"\cJ", @"unknown escape '\c'")]
    [InlineData(@"\x4", @"malformed '\x' escape")]
    [InlineData(@"\u12g4", @"malformed '\u' escape")]
    [InlineData(@"\u{110000}", "above U+10FFFF")]
    [InlineData(@"\u{}", @"malformed '\u{...}' escape")]
    [InlineData(@"\uD800x", @"lone surrogate '\uD800'")]
    [InlineData(@"\u{DC00}", "lone surrogate")]
    [InlineData(@"[\1]", @"octal escape '\1'")]
    [InlineData(@"\01", @"octal escape '\0'")]
    [InlineData("(?<1a>x)", "malformed group name")]
    [InlineData("(?P<a", "malformed group name")]
    [InlineData("ab\\", "lone '\\'")]
    public void Refused_constructs_are_named_in_the_error(string pattern, string expectedMessagePart)
    {
        var e = Assert.Throws<GrammarException>(() => RegexGrammar.Compile(pattern));
        Assert.Contains(expectedMessagePart, e.Message, StringComparison.Ordinal);
        var inSearch = Assert.Throws<GrammarException>(() => RegexGrammar.ToExpr(pattern, new GrammarBuilder(), fullMatch: false));
        Assert.Equal(e.Message, inSearch.Message);
    }

    [Fact]
    public void Pattern_that_is_not_valid_UTF16_is_refused()
    {
        var e = Assert.Throws<GrammarException>(() => RegexGrammar.Compile("a\uD800b"));
        Assert.Contains("offset 1: lone surrogate U+D800", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Nesting_is_limited_so_a_hostile_pattern_cannot_overflow_the_stack()
    {
        string deep = new string('(', 200) + "a" + new string(')', 200);
        Assert.True(GrammarAutomaton.Compile(RegexGrammar.Compile(deep)).Matches("a"));
        var e = Assert.Throws<GrammarException>(() => RegexGrammar.Compile(new string('(', 100_000)));
        Assert.Contains("offset 200: groups nest deeper than 200", e.Message, StringComparison.Ordinal);
    }

    private static Regex DotNetRegex(string pattern) => new(GrammarSamples.ForDotNet(pattern), RegexOptions.ECMAScript);

    private static IEnumerable<int> EveryBmpScalarAndSomeAstral()
    {
        for (int cp = 0; cp < 0x10000; cp++)
        {
            if (cp is < 0xD800 or > 0xDFFF)
            {
                yield return cp;
            }
        }

        foreach (int cp in new[] { 0x10000, 0x1F600, 0x1D11E, 0x20000, 0xE0020, 0x10FFFF })
        {
            yield return cp;
        }
    }

    private static int NodeCount(GrammarExpr expr) => expr switch
    {
        SequenceExpr s => 1 + s.Items.Sum(NodeCount),
        ChoiceExpr c => 1 + c.Alternatives.Sum(NodeCount),
        RepeatExpr r => 1 + NodeCount(r.Item),
        _ => 1,
    };
}

/// <summary>
/// Strings for comparing a grammar with a reference: random sentences of the grammar, their near misses (a code point
/// deleted, inserted or replaced, a slice doubled, two swapped) and random strings over an alphabet of the characters
/// the pattern mentions, their neighbours and a few others.
/// </summary>
internal static class GrammarSamples
{
    // Astral code points in tests come from the Emoticons block, which .NET sees as two UTF-16 units each ('.' would
    // match half an emoji); they are mapped one-to-one onto the start of the Private Use Area before asking .NET.
    private const int EmoticonsStart = 0x1F600;
    private const int EmoticonsEnd = 0x1F64F;
    private const int PrivateUseStart = 0xE000;

    private static readonly UTF8Encoding StrictUtf8 = new(encoderShouldEmitUTF8Identifier: false, throwOnInvalidBytes: true);

    private static readonly string[] Extras =
        ["a", "Z", "0", "9", " ", "\n", "\t", "\"", "\\", "-", "_", ".", "{", "}", "é", "я", "\u00a0", "\u2028", "\ufeff", "\u0085", "٣", "😀", "🙃"];

    /// <summary>A seed from the text that is the same in every run (string.GetHashCode is not).</summary>
    public static int Seed(string text) => text.Aggregate(17, (h, c) => unchecked(h * 31 + c));

    public static List<string> Alphabet(string pattern)
    {
        var alphabet = new HashSet<string>(Extras, StringComparer.Ordinal);
        foreach (var rune in pattern.EnumerateRunes())
        {
            foreach (int cp in new[] { rune.Value - 1, rune.Value, rune.Value + 1 })
            {
                if (Rune.IsValid(cp))
                {
                    alphabet.Add(char.ConvertFromUtf32(cp));
                }
            }
        }

        return [.. alphabet.Order(StringComparer.Ordinal)];
    }

    /// <summary>Up to <paramref name="count"/> random sentences of the grammar (fewer where recursion ran too deep).</summary>
    public static List<string> Sentences(Grammar grammar, Random random, int count)
    {
        var sentences = new List<string>();
        for (int i = 0; i < count; i++)
        {
            var bytes = new List<byte>();
            if (Walk(grammar, grammar.Rules[grammar.Root].Body, random, bytes, depth: 40))
            {
                // Strict decoding: a grammar that produced invalid UTF-8 fails the test here.
                sentences.Add(StrictUtf8.GetString([.. bytes]));
            }
        }

        return sentences;
    }

    public static List<string> NearMisses(List<string> sentences, List<string> alphabet, Random random, int mutations, int randoms, int maxLength)
    {
        var strings = new List<string>(sentences);
        for (int i = 0; i < mutations && sentences.Count > 0; i++)
        {
            strings.Add(Mutate(sentences[random.Next(sentences.Count)], alphabet, random));
        }

        for (int i = 0; i < randoms; i++)
        {
            strings.Add(RandomText(alphabet, random, maxLength));
        }

        return strings;
    }

    public static string RandomText(List<string> alphabet, Random random, int maxLength)
    {
        var text = new StringBuilder();
        int length = random.Next(maxLength + 1);
        for (int i = 0; i < length; i++)
        {
            text.Append(alphabet[random.Next(alphabet.Count)]);
        }

        return text.ToString();
    }

    /// <summary>The text as .NET's regex should see it: Emoticons mapped into the Private Use Area.</summary>
    public static string ForDotNet(string text)
    {
        var mapped = new StringBuilder();
        foreach (var rune in text.EnumerateRunes())
        {
            mapped.Append(rune.Value is >= EmoticonsStart and <= EmoticonsEnd ? (char)(PrivateUseStart + rune.Value - EmoticonsStart) : rune.ToString());
        }

        return mapped.ToString();
    }

    /// <summary>
    /// Asserts the automaton and the reference agree on every string, and that both verdicts occur (a comparison on
    /// strings that all match, or all fail, proves little).
    /// </summary>
    public static void AssertAgrees(GrammarAutomaton automaton, Func<string, bool> reference, IEnumerable<string> strings, string what)
    {
        var verdicts = strings.Select(s => (Text: s, Expected: reference(s))).ToList();
        var wrong = verdicts.Where(v => automaton.Matches(v.Text) != v.Expected).Take(8)
            .Select(v => $"{Show(v.Text)} (expected {(v.Expected ? "match" : "no match")})").ToList();
        Assert.True(wrong.Count == 0, $"{what} disagrees with the reference on: {string.Join(", ", wrong)}");
        Assert.True(verdicts.Count(v => v.Expected) >= 20, $"{what}: only {verdicts.Count(v => v.Expected)} of {verdicts.Count} strings match");
        Assert.True(verdicts.Count(v => !v.Expected) >= 20, $"{what}: only {verdicts.Count(v => !v.Expected)} of {verdicts.Count} strings fail");
    }

    // .NET cannot tell the other astral code points from surrogate pairs, nor the mapped Emoticons from the real
    // Private Use characters; a sampled '.' can produce either, and such strings are left out.
    public static bool DotNetCanJudge(string text) => text.EnumerateRunes().All(r =>
        r.Value is >= EmoticonsStart and <= EmoticonsEnd || (r.IsBmp && r.Value is < PrivateUseStart or > PrivateUseStart + EmoticonsEnd - EmoticonsStart));

    private static string Show(string text) =>
        "\"" + string.Concat(text.EnumerateRunes().Select(r => r.Value is >= 0x20 and < 0x7F ? r.ToString() : $"\\u{{{r.Value:X}}}")) + "\"";

    private static bool Walk(Grammar grammar, GrammarExpr expr, Random random, List<byte> output, int depth)
    {
        switch (expr)
        {
            case ByteSetExpr b:
                if (b.Set.IsEmpty)
                {
                    return false;
                }

                output.Add(b.Set.Values().ElementAt(random.Next(b.Set.Count)));
                return true;
            case SequenceExpr s:
                return s.Items.All(item => Walk(grammar, item, random, output, depth));
            case ChoiceExpr c:
                return Walk(grammar, c.Alternatives[random.Next(c.Alternatives.Length)], random, output, depth);
            case RepeatExpr r:
                // Up to three past the minimum: enough to go round the loop without long strings.
                int count = r.Min + random.Next(Math.Min(r.Max ?? int.MaxValue, r.Min + 3) - r.Min + 1);
                for (int i = 0; i < count; i++)
                {
                    if (!Walk(grammar, r.Item, random, output, depth))
                    {
                        return false;
                    }
                }

                return true;
            case RuleRefExpr rule:
                return depth > 0 && Walk(grammar, grammar.Rules[rule.Rule].Body, random, output, depth - 1);
            default:
                throw new ArgumentException($"Unknown expression {expr}.", nameof(expr));
        }
    }

    private static string Mutate(string text, List<string> alphabet, Random random)
    {
        var runes = text.EnumerateRunes().Select(r => r.ToString()).ToList();
        string Pick() => alphabet[random.Next(alphabet.Count)];
        int kind = runes.Count == 0 ? 1 : random.Next(5);
        switch (kind)
        {
            case 0:
                runes.RemoveAt(random.Next(runes.Count));
                break;
            case 1:
                runes.Insert(random.Next(runes.Count + 1), Pick());
                break;
            case 2:
                runes[random.Next(runes.Count)] = Pick();
                break;
            case 3:
                int start = random.Next(runes.Count);
                runes.InsertRange(start, runes.GetRange(start, random.Next(1, runes.Count - start + 1)));
                break;
            default:
                int at = random.Next(runes.Count);
                int other = random.Next(runes.Count);
                (runes[at], runes[other]) = (runes[other], runes[at]);
                break;
        }

        return string.Concat(runes);
    }
}
