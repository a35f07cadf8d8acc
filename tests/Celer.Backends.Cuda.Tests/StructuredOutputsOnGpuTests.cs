using Celer.Engine;
using Celer.Engine.Execution;
using Celer.TestSupport;
using Json.Schema;

namespace Celer.Backends.Cuda.Tests;

/// <summary>
/// Structured outputs on the GPU with the shipped model and its tokenizer: the grammar's bitmask is computed on the
/// host while the step runs and applied on the device (apply_token_bitmask), with async scheduling (the mask of step
/// N + 1 needs step N's token) and without, greedy and sampled, beside unconstrained requests in the same batch. Every
/// output ends and validates against its schema (JsonSchema.Net).
/// </summary>
public sealed class StructuredOutputsOnGpuTests
{
    private const string Schema = """
        {"type":"object","properties":{"name":{"type":"string","maxLength":8},"age":{"type":"integer","minimum":0,"maximum":120},
         "tags":{"type":"array","items":{"enum":["a","bb","ccc"]},"maxItems":3},"admin":{"type":"boolean"}},"required":["name","age","tags","admin"]}
        """;

    private const string Ngram = """{"method": "ngram", "num_speculative_tokens": 4, "prompt_lookup_min": 1, "prompt_lookup_max": 3}""";

    private static LlmEngine Engine(bool asyncScheduling, string? speculativeConfig = null) => ModelLoader.LoadOffline(new EngineArgs
    {
        Model = RepoPaths.DefaultModel, Device = "cuda", Dtype = "auto", MaxModelLen = 512, MaxNumSeqs = 16,
        KvCacheMemoryBytes = 64L << 20, AsyncScheduling = asyncScheduling, Seed = 3, SpeculativeConfig = speculativeConfig,
    }).Engine;

    [Theory]
    [InlineData(true, 0f)]
    [InlineData(true, 1f)]
    [InlineData(false, 1f)]
    public void Json_schema_outputs_end_and_validate_on_the_device_sampler(bool asyncScheduling, float temperature)
    {
        Gpu.Require();
        using LlmEngine engine = Engine(asyncScheduling);
        Assert.Equal(asyncScheduling, engine.AsyncScheduling);
        var tokenizer = Tokenization.Tokenizer.FromFile(Path.Combine(RepoPaths.DefaultModel, "tokenizer.json"));
        var constrained = new SamplingParams
        {
            Temperature = temperature, MaxTokens = 200,
            StructuredOutputs = new StructuredOutputsParams { Json = Schema, DisableAnyWhitespace = true },
        };
        var free = new SamplingParams { Temperature = temperature, MaxTokens = 40 };
        var requests = Enumerable.Range(0, 12).Select(i => new GenerateRequest(
            $"r{i:D2}", tokenizer.Encode(i % 2 == 0 ? "user = " : "def main("), (i % 3 == 2 ? free : constrained) with { Seed = i })).ToList();
        var validator = JsonSchema.FromText(Schema);
        foreach (RequestOutput output in engine.Generate(requests))
        {
            if (int.Parse(output.RequestId[1..]) % 3 == 2)
            {
                continue;
            }

            string text = string.Concat(output.Outputs.Select(o => o.TextDelta));
            Assert.Equal(FinishReason.Stop, output.Outputs[^1].FinishReason);
            using var document = System.Text.Json.JsonDocument.Parse(text);
            Assert.True(validator.Evaluate(document.RootElement).IsValid, text);
        }
    }

    /// <summary>n-gram drafts under a grammar are verified on the host row by row (each row's mask after the drafts before it): greedy output equals decoding without drafts.</summary>
    [Fact]
    public void Greedy_constrained_output_with_ngram_drafts_equals_decoding_without_them()
    {
        Gpu.Require();
        const string Repetitive = """{"type":"array","items":{"enum":["alpha beta","gamma"]},"minItems":8,"maxItems":8}""";
        var tokenizer = Tokenization.Tokenizer.FromFile(Path.Combine(RepoPaths.DefaultModel, "tokenizer.json"));
        var sampling = new SamplingParams { Temperature = 0, MaxTokens = 120, StructuredOutputs = new StructuredOutputsParams { Json = Repetitive, DisableAnyWhitespace = true } };
        List<GenerateRequest> Requests() => [.. Enumerable.Range(0, 4).Select(i => new GenerateRequest($"s{i}", tokenizer.Encode(i % 2 == 0 ? "x = " : "def f("), sampling))];
        static List<string> Texts(IReadOnlyList<RequestOutput> outputs) =>
            [.. outputs.OrderBy(o => o.RequestId, StringComparer.Ordinal).Select(o => string.Concat(o.Outputs.Select(c => c.TextDelta)))];
        List<string> plain, drafted;
        long accepted;
        using (LlmEngine engine = Engine(asyncScheduling: true))
        {
            plain = Texts(engine.Generate(Requests()));
        }

        using (LlmEngine engine = Engine(asyncScheduling: false, Ngram))
        {
            drafted = Texts(engine.Generate(Requests()));
            accepted = engine.Stats.SpecDecoding.NumAcceptedTokens;
        }

        Assert.Equal(plain, drafted);
        Assert.True(accepted > 0, "no draft token accepted");
    }
}
