using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Celer.Grammars.Json;
using Celer.TestSupport;
using Json.Schema;
using Json.Schema.Keywords;
using Xunit;

namespace Celer.Grammars.Tests;

/// <summary>
/// Property tests over a corpus of real-world-style schemas (Schemas/*.json, in the manner of JSONSchemaBench's
/// sources: API payloads and configs with nesting, refs, enums, formats and bounds), against JsonSchema.Net: every
/// sentence the grammar can produce is valid, and every document the grammar accepts is valid, whether written from
/// the schema, mutated from one, or mutated from a sentence.
/// </summary>
public partial class JsonSchemaGrammarTests
{
    private const int SentencesPerSchema = 150;
    private const int DocumentsPerSchema = 300;

    public static TheoryData<string> CorpusSchemas =>
        [.. Directory.EnumerateFiles(Path.Combine(RepoPaths.Root, "tests", "Celer.Grammars.Tests", "Schemas"), "*.json").Select(f => Path.GetFileName(f)).Order(StringComparer.Ordinal)];

    public static TheoryData<string, bool> CorpusSchemasByLayout =>
        [.. CorpusSchemas.SelectMany(s => new[] { new TheoryDataRow<string, bool>(s.Data, true), new TheoryDataRow<string, bool>(s.Data, false) })];

    [Fact]
    public void Corpus_has_at_least_25_schemas() => Assert.True(CorpusSchemas.Count >= 25, $"{CorpusSchemas.Count} schemas");

    [Theory]
    [MemberData(nameof(CorpusSchemasByLayout))]
    public void Every_sentence_is_valid_json_the_schema_accepts(string file, bool anyWhitespace)
    {
        var (schema, validator) = LoadCorpus(file);
        var grammar = JsonSchemaGrammar.Compile(schema, new JsonGrammarOptions { AnyWhitespace = anyWhitespace, MaxWhitespace = 3 });
        var automaton = GrammarAutomaton.Compile(grammar);
        var sentences = new GrammarSentences(grammar, seed: Seed(file) + (anyWhitespace ? 1 : 0));
        for (int i = 0; i < SentencesPerSchema; i++)
        {
            string sentence = sentences.Next();
            Assert.True(automaton.Matches(sentence), $"{file}: the automaton rejects its own grammar's sentence {sentence}");
            Assert.True(IsValidCorpus(validator, sentence, out string errors), $"{file}: sentence {sentence} is invalid: {errors}");
        }
    }

    [Theory]
    [MemberData(nameof(CorpusSchemas))]
    public void Every_accepted_document_is_valid(string file)
    {
        var (schema, validator) = LoadCorpus(file);
        var grammar = JsonSchemaGrammar.Compile(schema, new JsonGrammarOptions());
        var automaton = GrammarAutomaton.Compile(grammar);
        var instances = new JsonSchemaInstances(schema, seed: Seed(file) + 2);
        var sentences = new GrammarSentences(grammar, seed: Seed(file) + 3);
        var random = new Random(Seed(file) + 4);
        int accepted = 0, acceptedInstances = 0, validInstances = 0;
        for (int i = 0; i < DocumentsPerSchema; i++)
        {
            // A third each: written from the schema, a mutation of one, a mutation of a grammar sentence.
            var instance = instances.Generate();
            string document = (i % 3) switch
            {
                0 => JsonText.Write(instance),
                1 => JsonText.Write(instances.Mutate(instance)),
                _ => MutateText(sentences.Next(), random),
            };

            bool matches = automaton.Matches(document);
            if (i % 3 == 0 && IsValidCorpus(validator, document, out _))
            {
                validInstances++;
                acceptedInstances += matches ? 1 : 0;
            }

            if (matches)
            {
                accepted++;
                Assert.True(IsValidCorpus(validator, document, out string errors), $"{file}: the grammar accepts the invalid {document}: {errors}");
            }
        }

        // The grammar must take a fair share of what it is offered, or this test proves nothing; it may refuse valid
        // documents (another date-time separator, escapes inside a pattern), but not most of them.
        Assert.True(accepted >= DocumentsPerSchema / 20, $"{file}: only {accepted} of {DocumentsPerSchema} documents accepted");
        Assert.True(acceptedInstances >= validInstances / 4, $"{file}: only {acceptedInstances} of {validInstances} valid written documents accepted");
    }

    // A seed per schema file that stays the same from run to run (string.GetHashCode does not).
    private static int Seed(string file) => file.Aggregate(17, (hash, c) => unchecked(hash * 31 + c));

    // One random edit where mistakes hide: a digit, a quote, a comma, a bracket, a character dropped or doubled.
    private static string MutateText(string text, Random random)
    {
        if (text.Length == 0)
        {
            return "x";
        }

        var runes = text.EnumerateRunes().ToList();
        int at = random.Next(runes.Count);
        string[] inserts = ["0", "1", "9", "-", ".", "e", "\"", "\\", ",", "}", "]", " ", "a", "é"];
        switch (random.Next(4))
        {
            case 0:
                runes.RemoveAt(at);
                break;
            case 1:
                runes.Insert(at, runes[at]);
                break;
            case 2:
                runes[at] = Rune.GetRuneAt(inserts[random.Next(inserts.Length)], 0);
                break;
            default:
                runes.Insert(at, Rune.GetRuneAt(inserts[random.Next(inserts.Length)], 0));
                break;
        }

        return string.Concat(runes.Select(r => r.ToString()));
    }

    private static (JsonNode Schema, JsonSchema Validator) LoadCorpus(string file)
    {
        string text = File.ReadAllText(Path.Combine(RepoPaths.Root, "tests", "Celer.Grammars.Tests", "Schemas", file));
        return (JsonNode.Parse(text)!, Validators.FromText(text));
    }

    // Invalid JSON is invalid; JSON is checked with format assertion on.
    private static bool IsValidCorpus(JsonSchema validator, string text, out string errors)
    {
        JsonDocument document;
        try
        {
            document = JsonDocument.Parse(text);
        }
        catch (JsonException e)
        {
            errors = e.Message;
            return false;
        }

        using (document)
        {
            var result = validator.Evaluate(document.RootElement, new EvaluationOptions { RequireFormatValidation = true, OutputFormat = OutputFormat.List });
            errors = string.Join("; ", (result.Details ?? []).Where(d => d.Errors is not null).SelectMany(d => d.Errors!.Select(e => $"{d.InstanceLocation} {e.Key}: {e.Value}")));
            return result.IsValid;
        }
    }

    /// <summary>
    /// JsonSchema.Net as the validator: with the 2020-12 dialect unless a schema names another (its default dialect
    /// asserts format and refuses unknown keywords, which JSON Schema ignores), and with minLength and maxLength that
    /// count code points as JSON Schema and the grammar do (JsonSchema.Net counts grapheme clusters).
    /// </summary>
    private static class Validators
    {
        public static BuildOptions Options { get; } = Create();

        public static JsonSchema FromText(string schema) => JsonSchema.FromText(schema, Options);

        private static BuildOptions Create()
        {
            IKeywordHandler[] standard = [MinLengthKeyword.Instance, MaxLengthKeyword.Instance];
            IKeywordHandler[] counted = [new MinCodePoints(), new MaxCodePoints()];
            var registry = new DialectRegistry();
            registry.Register(Dialect.Draft07.Without(standard, Dialect.Draft07.Id).With(counted, Dialect.Draft07.Id, allowUnknownKeywords: true));
            return new BuildOptions
            {
                Dialect = Dialect.Draft202012.Without(standard, Dialect.Draft202012.Id).With(counted, Dialect.Draft202012.Id, allowUnknownKeywords: true),
                DialectRegistry = registry,
            };
        }

        private static KeywordEvaluation Check(string name, EvaluationContext context, Func<long, bool> ok)
        {
            if (context.Instance.ValueKind != JsonValueKind.String)
            {
                return KeywordEvaluation.Ignore;
            }

            long length = context.Instance.GetString()!.EnumerateRunes().LongCount();
            return new KeywordEvaluation { Keyword = name, IsValid = ok(length), Error = ok(length) ? null : $"{length} code points" };
        }

        private sealed class MinCodePoints : MinLengthKeyword
        {
            public override KeywordEvaluation Evaluate(KeywordData keyword, EvaluationContext context) => Check(Name, context, n => n >= (long)keyword.Value!);
        }

        private sealed class MaxCodePoints : MaxLengthKeyword
        {
            public override KeywordEvaluation Evaluate(KeywordData keyword, EvaluationContext context) => Check(Name, context, n => n <= (long)keyword.Value!);
        }
    }
}
