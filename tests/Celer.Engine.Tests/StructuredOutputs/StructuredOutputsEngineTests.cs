using System.Text.Json.Nodes;
using System.Text.RegularExpressions;
using Celer.Engine.Execution;
using Celer.TestSupport;
using Json.Schema;

namespace Celer.Engine.Tests.StructuredOutputs;

/// <summary>
/// Structured outputs through the whole engine on the CPU with the shipped model and its real tokenizer: every output
/// that ends (finish_reason stop) is a sentence of its constraint, checked by independent means (JsonSchema.Net for
/// schemas, .NET's regex for patterns), greedy and sampled; the constraint binds only its own request's rows.
/// </summary>
public sealed class StructuredOutputsEngineTests
{
    // Finite languages (bounded strings, numbers and arrays), so that even a model that knows nothing of JSON reaches
    // the end within max_tokens: the test can demand that every output ends.
    public static TheoryData<string, float> Schemas() => new()
    {
        { """{"type":"object","properties":{"name":{"type":"string","maxLength":8},"age":{"type":"integer","minimum":0,"maximum":120},"admin":{"type":"boolean"}},"required":["name","age","admin"]}""", 0f },
        { """{"type":"object","properties":{"name":{"type":"string","maxLength":8},"age":{"type":"integer","minimum":0,"maximum":120},"admin":{"type":"boolean"}},"required":["name","age","admin"]}""", 1f },
        { """{"type":"object","properties":{"color":{"enum":["red","green","blue"]},"tags":{"type":"array","items":{"type":"string","pattern":"^[a-z]{1,4}$"},"maxItems":3},"note":{"type":["string","null"],"maxLength":5}},"required":["color","tags"]}""", 1f },
        { """{"type":"array","prefixItems":[{"const":"point"},{"type":"number","minimum":-1,"maximum":1}],"items":false,"minItems":2}""", 1f },
    };

    private static LlmEngine Engine(string? speculativeConfig = null) => ModelLoader.LoadOffline(
        new EngineArgs { Model = RepoPaths.DefaultModel, MaxNumSeqs = 8, MaxModelLen = 512, Seed = 7, SpeculativeConfig = speculativeConfig }).Engine;

    private static List<GenerateRequest> Requests(SamplingParams sampling, int count = 6)
    {
        var tokenizer = Tokenization.Tokenizer.FromFile(Path.Combine(RepoPaths.DefaultModel, "tokenizer.json"));
        string[] prompts = ["def parse(", "# A user record\nuser = ", "import json\n", "x = ", "class Node:\n", "print("];
        return [.. Enumerable.Range(0, count).Select(i => new GenerateRequest($"r{i}", tokenizer.Encode(prompts[i % prompts.Length]), sampling with { Seed = i }))];
    }

    private static List<(string Text, FinishReason? Reason)> Texts(IReadOnlyList<RequestOutput> outputs) =>
        [.. outputs.OrderBy(o => o.RequestId, StringComparer.Ordinal).Select(o => (string.Concat(o.Outputs.Select(c => c.TextDelta)), o.Outputs[^1].FinishReason))];

    [Theory]
    [MemberData(nameof(Schemas))]
    public void Json_schema_outputs_end_and_validate(string schema, float temperature)
    {
        using var engine = Engine();
        var sampling = new SamplingParams
        {
            Temperature = temperature,
            MaxTokens = 300,
            StructuredOutputs = new StructuredOutputsParams { Json = schema, DisableAnyWhitespace = true },
        };
        var validator = JsonSchema.FromText(schema);
        foreach (var (text, reason) in Texts(engine.Generate(Requests(sampling))))
        {
            Assert.Equal(FinishReason.Stop, reason);
            using var instance = System.Text.Json.JsonDocument.Parse(text);
            var result = validator.Evaluate(instance.RootElement);
            Assert.True(result.IsValid, $"{text} does not validate against {schema}");
        }
    }

    // Unbounded languages: an output may be cut by max_tokens, and is then a prefix of a sentence.
    public static TheoryData<string?, float> OpenSchemas() => new()
    {
        { null, 1f },
        { """{"$defs":{"node":{"type":"object","properties":{"v":{"type":"integer","minimum":-9,"maximum":9},"next":{"anyOf":[{"type":"null"},{"$ref":"#/$defs/node"}]}},"required":["v","next"]}},"$ref":"#/$defs/node"}""", 0f },
        { """{"type":"object","properties":{"id":{"type":"string","format":"uuid"},"at":{"type":"string","format":"date-time"},"items":{"type":"array","items":{"type":"number"}}},"required":["id","at","items"]}""", 1f },
    };

    [Theory]
    [MemberData(nameof(OpenSchemas))]
    public void Open_languages_validate_when_they_end_and_are_prefixes_when_cut(string? schema, float temperature)
    {
        using var engine = Engine();
        var constraint = schema is null ? new StructuredOutputsParams { JsonObject = true } : new StructuredOutputsParams { Json = schema };
        var sampling = new SamplingParams { Temperature = temperature, MaxTokens = 64, StructuredOutputs = constraint };
        var options = new Grammars.Json.JsonGrammarOptions();
        var prefix = Grammars.GrammarAutomaton.Compile(schema is null
            ? Grammars.Json.JsonSchemaGrammar.AnyJsonObject(options)
            : Grammars.Json.JsonSchemaGrammar.Compile(JsonNode.Parse(schema)!, options));
        foreach (var (text, reason) in Texts(engine.Generate(Requests(sampling))))
        {
            if (reason == FinishReason.Stop)
            {
                using var instance = System.Text.Json.JsonDocument.Parse(text);
                Assert.Equal(System.Text.Json.JsonValueKind.Object, instance.RootElement.ValueKind);
                if (schema is not null)
                {
                    Assert.True(JsonSchema.FromText(schema).Evaluate(instance.RootElement).IsValid, text);
                }
            }
            else
            {
                Assert.Equal(FinishReason.Length, reason);
                Assert.True(prefix.IsPrefix(System.Text.Encoding.UTF8.GetBytes(text)), text);
            }
        }
    }

    [Theory]
    [InlineData(0f)]
    [InlineData(1f)]
    public void Regex_choice_and_grammar_outputs_are_sentences(float temperature)
    {
        using var engine = Engine();
        const string Pattern = "[a-z]{2,5}-[0-9]{1,3}( \\(ok\\))?";
        string[] choices = ["yes", "no", "perhaps not"];
        const string Gbnf = """
            root ::= "(" expr ")"
            expr ::= term ([+*] term){0,3}
            term ::= [0-9] | "(" [0-9] [+*] [0-9] ")"
            """;
        var regex = Run(engine, temperature, new StructuredOutputsParams { Regex = Pattern });
        Assert.All(regex, t => Assert.Matches(new Regex("^(?:" + Pattern + ")$"), t));
        var chosen = Run(engine, temperature, new StructuredOutputsParams { Choice = choices });
        Assert.All(chosen, t => Assert.Contains(t, choices));
        var arithmetic = Run(engine, temperature, new StructuredOutputsParams { Grammar = Gbnf });
        Assert.All(arithmetic, t => Assert.Matches(new Regex(@"^\((?:[0-9]|\([0-9][+*][0-9]\))(?:[+*](?:[0-9]|\([0-9][+*][0-9]\))){0,3}\)$"), t));
        // The same language in Lark's notation, as vLLM reads a grammar with no '::=' line.
        const string Lark = """
            start: '(' expr ')'
            expr: term ([+*] term){0,3}
            term: [0-9]
                | '(' [0-9] [+*] [0-9] ')'
            """;
        var lark = Run(engine, temperature, new StructuredOutputsParams { Grammar = Lark });
        Assert.All(lark, t => Assert.Matches(new Regex(@"^\((?:[0-9]|\([0-9][+*][0-9]\))(?:[+*](?:[0-9]|\([0-9][+*][0-9]\))){0,3}\)$"), t));

        static List<string> Run(LlmEngine engine, float temperature, StructuredOutputsParams constraint)
        {
            var texts = Texts(engine.Generate(Requests(new SamplingParams { Temperature = temperature, MaxTokens = 64, StructuredOutputs = constraint })));
            Assert.All(texts, t => Assert.Equal(FinishReason.Stop, t.Reason));
            return [.. texts.Select(t => t.Text)];
        }
    }

    [Fact]
    public void A_constraint_binds_only_its_own_request()
    {
        using var engine = Engine();
        var free = new SamplingParams { Temperature = 0, MaxTokens = 24, IgnoreEos = true };
        var alone = Texts(engine.Generate(Requests(free, 2)));
        var constrained = Requests(new SamplingParams { Temperature = 0, MaxTokens = 24, StructuredOutputs = new StructuredOutputsParams { Regex = "[0-9]{4}" } }, 2)
            .Select(r => r with { RequestId = "c" + r.RequestId });
        var outputs = engine.Generate([.. Requests(free, 2), .. constrained]);
        var texts = Texts(outputs);   // by id: the constrained "cr0", "cr1" first
        Assert.Equal(alone, texts.Skip(2).ToList());
        Assert.All(texts.Take(2), t => Assert.Matches("^[0-9]{4}$", t.Text));
    }

    /// <summary>
    /// n-gram drafts under a grammar: each draft row is verified against the grammar's state after the drafts before it
    /// (the host sampler appends each accepted token before the next row), so greedy output is token for token the one
    /// decoded without drafts, and a repetitive structure gets drafts accepted.
    /// </summary>
    [Fact]
    public void Greedy_constrained_output_with_ngram_drafts_equals_decoding_without_them()
    {
        const string Schema = """{"type":"array","items":{"enum":["alpha beta","gamma"]},"minItems":8,"maxItems":8}""";
        var sampling = new SamplingParams
        {
            Temperature = 0, MaxTokens = 120,
            StructuredOutputs = new StructuredOutputsParams { Json = Schema, DisableAnyWhitespace = true },
        };
        List<(string Text, FinishReason? Reason)> plain, speculative;
        using (var engine = Engine())
        {
            plain = Texts(engine.Generate(Requests(sampling, 4)));
        }

        Celer.Engine.Scheduling.SpecDecodingStats stats;
        using (var engine = Engine("""{"method": "ngram", "num_speculative_tokens": 4, "prompt_lookup_min": 1, "prompt_lookup_max": 3}"""))
        {
            speculative = Texts(engine.Generate(Requests(sampling, 4)));
            stats = engine.Stats.SpecDecoding;
        }

        Assert.Equal(plain, speculative);
        Assert.All(speculative, t => Assert.Equal(FinishReason.Stop, t.Reason));
        Assert.True(stats.NumAcceptedTokens > 0, $"{stats.NumDraftTokens} draft tokens, none accepted");
        using var document = System.Text.Json.JsonDocument.Parse(speculative[0].Text);
        Assert.True(JsonSchema.FromText(Schema).Evaluate(document.RootElement).IsValid, speculative[0].Text);
    }

    /// <summary>
    /// With a reasoning model's end-of-thinking token the output is free until that token and constrained after it: here
    /// the fourth token of the unconstrained greedy output stands for it, so the gated output equals that one up to and
    /// including the token, and is three digits after it.
    /// </summary>
    [Fact]
    public void A_constraint_after_reasoning_starts_at_the_end_of_thinking_token()
    {
        using var engine = Engine();
        var free = engine.Generate(Requests(new SamplingParams { Temperature = 0, MaxTokens = 40, IgnoreEos = true }, 1))[0];
        int[] freeTokens = [.. free.Outputs.SelectMany(o => o.TokenIdsDelta)];
        int end = freeTokens[3], at = Array.IndexOf(freeTokens, end);
        var gated = engine.Generate(Requests(new SamplingParams
        {
            Temperature = 0, MaxTokens = 40,
            StructuredOutputs = new StructuredOutputsParams { Regex = "[0-9]{3}", ReasoningEndTokenIds = [end] },
        }, 1))[0];
        int[] gatedTokens = [.. gated.Outputs.SelectMany(o => o.TokenIdsDelta)];
        Assert.Equal(freeTokens[..(at + 1)], gatedTokens[..(at + 1)]);
        var tokenizer = Tokenization.Tokenizer.FromFile(Path.Combine(RepoPaths.DefaultModel, "tokenizer.json"));
        Assert.Matches("^[0-9]{3}$", tokenizer.Decode(gatedTokens.AsSpan(at + 1)));
        Assert.Equal(FinishReason.Stop, gated.Outputs[^1].FinishReason);
    }

    [Theory]
    [InlineData("""{"type":"object","not":{"required":["a"]}}""", "not")]
    [InlineData("""{"type":"object","patternProperties":{"^a":{"type":"integer"}}}""", "patternProperties")]
    [InlineData("""{"type": "object", """, "not valid JSON")]
    public void Unsupported_or_malformed_schemas_are_refused_at_admission(string schema, string named)
    {
        using var engine = Engine();
        var sampling = new SamplingParams { StructuredOutputs = new StructuredOutputsParams { Json = schema } };
        var e = Assert.Throws<EngineRequestException>(() => engine.Generate(Requests(sampling, 1)));
        Assert.Contains(named, e.Message);
        Assert.Equal("structured_outputs", e.Param);
    }
}
