using Celer.Engine.Execution;
using Celer.Engine.Scheduling;
using Celer.Models.Config;
using Celer.TestSupport;
using Xunit;

namespace Celer.Engine.Tests.Speculative;

/// <summary>
/// n-gram speculative decoding through the whole engine on the CPU: greedy output token for token equal to decoding
/// without drafts on every fixture model (with drafts proposed and accepted, so the verification path really ran),
/// under a block pool tight enough to preempt, and seeded sampling reproducible.
/// </summary>
public sealed class SpeculativeDecodingTests
{
    private const string Ngram = """{"method": "ngram", "num_speculative_tokens": 3, "prompt_lookup_min": 1, "prompt_lookup_max": 2}""";

    public static TheoryData<string> Models() => new(RepoPaths.FixtureModelNames().Where(name =>
    {
        ModelConfig config = ModelConfig.Load(Path.Combine(RepoPaths.FixtureModels, name));
        // W8A8 fixtures quantize each row's input by its own scale: rows of another batch shape may round differently.
        // LongRoPE picks its factors per step from the step's longest position, which drafts extend (as candidate tokens
        // do in transformers' assisted generation): the step that crosses the original context switches earlier.
        return !Fp8Fixtures.RoundsInputs(Path.Combine(RepoPaths.FixtureModels, name)) && config.Rope.RopeType != Celer.Models.Rope.RopeType.LongRope;
    }));

    private static LlmEngine Engine(string name, string? speculative, int? kvBlocks = null, int maxNumSeqs = 16)
    {
        string model = Path.Combine(RepoPaths.FixtureModels, name);
        ModelConfig config = ModelConfig.Load(model);
        long blockBytes = 2L * config.NumHiddenLayers * 16 * config.NumKeyValueHeads * config.HeadDim * sizeof(float);
        return ModelLoader.LoadOffline(new EngineArgs
        {
            Model = model,
            MaxModelLen = 128,
            MaxNumSeqs = maxNumSeqs,
            MaxNumBatchedTokens = 64,
            KvCacheMemoryBytes = kvBlocks is int blocks ? blocks * blockBytes : null,
            Seed = 1,
            Quantization = config.Quantization?.Method,
            SpeculativeConfig = speculative,
        }).Engine;
    }

    private static List<GenerateRequest> Requests(string name, SamplingParams sampling) =>
        [.. ReferenceFixture.Load(Path.Combine(RepoPaths.FixtureModels, name, "reference.json")).Cases
            .Select((c, i) => new GenerateRequest($"r{i}", c.PromptTokenIds, sampling))];

    private static List<List<int>> Tokens(IReadOnlyList<RequestOutput> outputs) =>
        [.. outputs.OrderBy(o => o.RequestId, StringComparer.Ordinal).Select(o => o.Outputs.SelectMany(c => c.TokenIdsDelta).ToList())];

    /// <summary>The chosen tokens' logprobs, request by request.</summary>
    private static List<List<float>> ChosenLogprobs(IReadOnlyList<RequestOutput> outputs) =>
        [.. outputs.OrderBy(o => o.RequestId, StringComparer.Ordinal).Select(o => o.Outputs.SelectMany(c => c.LogprobsDelta!).Select(p => p.Chosen.Logprob).ToList())];

    [Theory]
    [MemberData(nameof(Models))]
    public void Greedy_output_with_ngram_drafts_equals_decoding_without_them(string name)
    {
        var greedy = new SamplingParams { Temperature = 0, MaxTokens = 60, IgnoreEos = true, Logprobs = 1 };
        IReadOnlyList<RequestOutput> plain, speculative;
        SpecDecodingStats stats;
        using (LlmEngine engine = Engine(name, null))
        {
            plain = engine.Generate(Requests(name, greedy));
        }

        using (LlmEngine engine = Engine(name, Ngram))
        {
            Assert.False(engine.AsyncScheduling);
            speculative = engine.Generate(Requests(name, greedy));
            stats = engine.Stats.SpecDecoding;
        }

        Assert.Equal(Tokens(plain), Tokens(speculative));
        // A verified token's logprob comes from its verify row, computed beside the drafts: the same logits up to the
        // matmul's summation order for a step of more rows.
        List<List<float>> plainLogprobs = ChosenLogprobs(plain), speculativeLogprobs = ChosenLogprobs(speculative);
        for (int i = 0; i < plainLogprobs.Count; i++)
        {
            Assert.Equal(plainLogprobs[i].Count, speculativeLogprobs[i].Count);
            float worst = plainLogprobs[i].Zip(speculativeLogprobs[i], (a, b) => Math.Abs(a - b)).Max();
            Assert.True(worst < 1e-3f, $"{name} request {i}: logprobs differ by {worst}");
        }

        Assert.True(stats.NumDraftTokens > 0, $"{name}: no drafts were proposed");
        TestContext.Current.SendDiagnosticMessage(
            $"{name}: {stats.NumAcceptedTokens} of {stats.NumDraftTokens} draft tokens accepted in {stats.NumDrafts} verifications");
    }

    /// <summary>Random tiny models repeat themselves: some fixture must accept drafts, or the accept path went untested.</summary>
    [Fact]
    public void Drafts_are_accepted_where_the_output_repeats()
    {
        using LlmEngine engine = Engine("qwen3-moe-bf16", Ngram);
        engine.Generate(Requests("qwen3-moe-bf16", new SamplingParams { Temperature = 0, MaxTokens = 60, IgnoreEos = true }));
        SpecDecodingStats stats = engine.Stats.SpecDecoding;
        Assert.True(stats.NumAcceptedTokens > 0, $"{stats.NumDraftTokens} drafts, none accepted");
        Assert.Equal(stats.NumAcceptedTokens, stats.NumAcceptedTokensPerPosition.Sum());
        Assert.True(stats.NumAcceptedTokensPerPosition[0] >= stats.NumAcceptedTokensPerPosition[^1]);
    }

    /// <summary>
    /// A block pool of 12 blocks for 16 sequences: requests are preempted and recomputed while drafts come and go, and
    /// the greedy output still equals decoding without drafts under the same pool.
    /// </summary>
    [Fact]
    public void Preemption_with_drafts_keeps_greedy_output()
    {
        var greedy = new SamplingParams { Temperature = 0, MaxTokens = 40, IgnoreEos = true };
        List<GenerateRequest> requests = [.. Enumerable.Range(0, 16).Select(i =>
            new GenerateRequest($"r{i:D2}", [.. Enumerable.Range(0, 5 + i).Select(t => (t * 7 + i) % 50 + 3)], greedy))];
        List<List<int>> plain, speculative;
        using (LlmEngine engine = Engine("llama-gqa-bf16-v4config", null, kvBlocks: 13))
        {
            plain = Tokens(engine.Generate(requests));
        }

        using (LlmEngine engine = Engine("llama-gqa-bf16-v4config", Ngram, kvBlocks: 13))
        {
            speculative = Tokens(engine.Generate(requests));
            Assert.True(engine.Stats.NumPreemptions > 0, "the pool was meant to force preemptions");
            Assert.True(engine.Stats.SpecDecoding.NumDraftTokens > 0);
        }

        for (int i = 0; i < plain.Count; i++)
        {
            Assert.Equal(plain[i], speculative[i]);
        }
    }

    /// <summary>disable_by_batch_size: the fixture's four requests decode together, so a limit of 4 leaves them without drafts.</summary>
    [Theory]
    [InlineData(4, false)]
    [InlineData(5, true)]
    public void Drafts_stop_at_the_batch_size_limit(int limit, bool drafts)
    {
        using LlmEngine engine = Engine("qwen3-moe-bf16",
            $$"""{"method": "ngram", "num_speculative_tokens": 3, "prompt_lookup_min": 1, "disable_by_batch_size": {{limit}}}""");
        engine.Generate(Requests("qwen3-moe-bf16", new SamplingParams { Temperature = 0, MaxTokens = 30, IgnoreEos = true }));
        Assert.Equal(drafts, engine.Stats.SpecDecoding.NumDraftTokens > 0);
    }

    [Fact]
    public void Seeded_sampling_with_drafts_is_reproducible()
    {
        var sampling = new SamplingParams { Temperature = 0.8f, TopP = 0.9f, Seed = 7, MaxTokens = 40, IgnoreEos = true };
        List<List<int>> first, second;
        using (LlmEngine engine = Engine("qwen3-moe-bf16", Ngram))
        {
            first = Tokens(engine.Generate(Requests("qwen3-moe-bf16", sampling)));
        }

        using (LlmEngine engine = Engine("qwen3-moe-bf16", Ngram))
        {
            second = Tokens(engine.Generate(Requests("qwen3-moe-bf16", sampling)));
        }

        Assert.Equal(first, second);
        Assert.All(first, tokens => Assert.Equal(40, tokens.Count));
    }
}
