using Celer.Engine.Execution;
using Celer.Engine.Scheduling;
using Celer.Models.Weights;
using Celer.Models.Config;
using Celer.TestSupport;
using Xunit;

namespace Celer.Engine.Tests.Speculative;

/// <summary>
/// Draft-model speculative decoding through the whole engine on the CPU. A model drafting for itself must have nearly
/// every draft accepted, which holds only if the draft's KV cache holds the right tokens at the right slots after
/// catching up, rejections and preemptions; a draft of another architecture is mostly rejected, which exercises the
/// rejection path. Either way greedy output equals decoding without drafts, token for token.
/// </summary>
public sealed class DraftModelSpeculativeTests
{
    public static TheoryData<string> Models() => SpeculativeDecodingTests.Models();

    private static string Dir(string name) => Path.Combine(RepoPaths.FixtureModels, name);

    private static string DraftConfig(string draft, int k = 3, string extra = "") =>
        $$"""{"method": "draft_model", "model": {{System.Text.Json.JsonSerializer.Serialize(Dir(draft))}}, "num_speculative_tokens": {{k}}{{extra}}}""";

    private static LlmEngine Engine(string name, string? speculative, int? kvBlocks = null, int maxNumBatchedTokens = 64, int maxNumSeqs = 16)
    {
        ModelConfig config = ModelConfig.Load(Dir(name));
        // With a draft model each block also holds the draft's KV: the pool's bytes are counted for both.
        long blockBytes = 2L * config.NumHiddenLayers * 16 * config.NumKeyValueHeads * config.HeadDim * sizeof(float) * (speculative is null ? 1 : 2);
        return ModelLoader.LoadOffline(new EngineArgs
        {
            Model = Dir(name),
            MaxModelLen = 128,
            MaxNumSeqs = maxNumSeqs,
            MaxNumBatchedTokens = maxNumBatchedTokens,
            KvCacheMemoryBytes = kvBlocks is int blocks ? blocks * blockBytes : null,
            Seed = 1,
            Quantization = config.Quantization?.Method,
            SpeculativeConfig = speculative,
        }).Engine;
    }

    private static List<GenerateRequest> FixtureRequests(string name, SamplingParams sampling) =>
        [.. ReferenceFixture.Load(Path.Combine(Dir(name), "reference.json")).Cases.Select((c, i) => new GenerateRequest($"r{i}", c.PromptTokenIds, sampling))];

    /// <summary>Sixteen prompts of 5..20 tokens.</summary>
    private static List<GenerateRequest> ManyRequests(SamplingParams sampling) =>
        [.. Enumerable.Range(0, 16).Select(i => new GenerateRequest($"r{i:D2}", [.. Enumerable.Range(0, 5 + i).Select(t => (t * 7 + i) % 50 + 3)], sampling))];

    private static List<List<int>> Tokens(IReadOnlyList<RequestOutput> outputs) =>
        [.. outputs.OrderBy(o => o.RequestId, StringComparer.Ordinal).Select(o => o.Outputs.SelectMany(c => c.TokenIdsDelta).ToList())];

    private static (List<List<int>> Tokens, SpecDecodingStats Stats, long Preemptions) Run(
        string name, string? speculative, List<GenerateRequest> requests, int? kvBlocks = null, int maxNumBatchedTokens = 64)
    {
        using LlmEngine engine = Engine(name, speculative, kvBlocks, maxNumBatchedTokens);
        List<List<int>> tokens = Tokens(engine.Generate(requests));
        return (tokens, engine.Stats.SpecDecoding, engine.Stats.NumPreemptions);
    }

    private static readonly SamplingParams Greedy = new() { Temperature = 0, MaxTokens = 40, IgnoreEos = true };

    [Theory]
    [MemberData(nameof(Models))]
    public void A_model_drafting_for_itself_has_its_drafts_accepted_and_the_output_unchanged(string name)
    {
        (List<List<int>> plain, _, _) = Run(name, null, FixtureRequests(name, Greedy));
        (List<List<int>> speculative, SpecDecodingStats stats, _) = Run(name, DraftConfig(name), FixtureRequests(name, Greedy));

        Assert.Equal(plain, speculative);
        Assert.True(stats.NumDraftTokens > 0, $"{name}: no drafts were proposed");
        // The draft computes what the target does, in other batch shapes: only near-ties may come out otherwise.
        double rate = (double)stats.NumAcceptedTokens / stats.NumDraftTokens;
        Assert.True(rate >= 0.9, $"{name}: {stats.NumAcceptedTokens} of {stats.NumDraftTokens} drafts accepted");
    }

    /// <summary>
    /// A token budget of 16 splits the draft's catch-up over the prompts into several passes (a prompt across two), and
    /// a pool of 13 blocks for 16 sequences preempts requests, whose blocks and draft cache start over.
    /// </summary>
    [Fact]
    public void Catching_up_in_small_passes_and_preemption_keep_the_drafts_right()
    {
        const string Name = "llama-gqa-bf16-v4config";
        (List<List<int>> plain, _, _) = Run(Name, null, ManyRequests(Greedy), kvBlocks: 13, maxNumBatchedTokens: 16);
        (List<List<int>> speculative, SpecDecodingStats stats, long preemptions) =
            Run(Name, DraftConfig(Name), ManyRequests(Greedy), kvBlocks: 13, maxNumBatchedTokens: 16);

        Assert.True(preemptions > 0, "the pool was meant to force preemptions");
        Assert.Equal(plain, speculative);
        double rate = (double)stats.NumAcceptedTokens / stats.NumDraftTokens;
        Assert.True(rate >= 0.9, $"{stats.NumAcceptedTokens} of {stats.NumDraftTokens} drafts accepted");
    }

    [Fact]
    public void A_draft_of_another_architecture_is_mostly_rejected_and_the_output_unchanged()
    {
        const string Name = "llama-gqa-bf16-v4config";
        (List<List<int>> plain, _, _) = Run(Name, null, ManyRequests(Greedy));
        (List<List<int>> speculative, SpecDecodingStats stats, _) = Run(Name, DraftConfig("qwen3-headdim-qknorm-bf16", k: 4), ManyRequests(Greedy));

        Assert.Equal(plain, speculative);
        Assert.True(stats.NumDraftTokens > 0);
        Assert.True(stats.NumAcceptedTokens < stats.NumDraftTokens / 2, $"{stats.NumAcceptedTokens} of {stats.NumDraftTokens} drafts of an unrelated model accepted");
    }

    [Fact]
    public void Seeded_sampling_with_a_draft_model_is_reproducible()
    {
        const string Name = "qwen3-moe-bf16";
        var sampling = new SamplingParams { Temperature = 0.8f, TopP = 0.9f, Seed = 7, MaxTokens = 40, IgnoreEos = true };
        (List<List<int>> first, SpecDecodingStats stats, _) = Run(Name, DraftConfig(Name), FixtureRequests(Name, sampling));
        (List<List<int>> second, _, _) = Run(Name, DraftConfig(Name), FixtureRequests(Name, sampling));

        Assert.Equal(first, second);
        Assert.All(first, tokens => Assert.Equal(40, tokens.Count));
        Assert.True(stats.NumAcceptedTokens > 0);
    }

    /// <summary>disable_by_batch_size: the fixture's four requests decode together, so a limit of 4 leaves them without drafts.</summary>
    [Theory]
    [InlineData(4, false)]
    [InlineData(5, true)]
    public void Drafts_stop_at_the_batch_size_limit(int limit, bool drafts)
    {
        const string Name = "qwen3-moe-bf16";
        // A budget that prefills the four prompts in one step: from then on every step samples all four.
        (_, SpecDecodingStats stats, _) = Run(
            Name, DraftConfig(Name, extra: $", \"disable_by_batch_size\": {limit}"), FixtureRequests(Name, Greedy), maxNumBatchedTokens: 512);
        Assert.Equal(drafts, stats.NumDraftTokens > 0);
    }

    /// <summary>
    /// The shipped draft of the default model (models/celer-tiny-py-draft, distilled from it): real weights on both sides,
    /// greedy output unchanged, and about as many drafts accepted as its measured greedy agreement (62.9 %) predicts.
    /// </summary>
    [Fact]
    public void The_default_models_shipped_draft_is_accepted_often_and_leaves_greedy_output_unchanged()
    {
        ReferenceFixture fixture = ReferenceFixture.Load(Path.Combine(RepoPaths.Fixtures, "celer-tiny-py", "reference.json"));
        var sampling = new SamplingParams { Temperature = 0, MaxTokens = 64, IgnoreEos = true };
        List<GenerateRequest> requests = [.. fixture.Cases.Select((c, i) => new GenerateRequest($"r{i}", c.PromptTokenIds, sampling))];
        string draft = System.Text.Json.JsonSerializer.Serialize(Path.Combine(RepoPaths.Root, "models", "celer-tiny-py-draft"));
        List<List<int>> plain, speculative;
        SpecDecodingStats stats;
        using (LlmEngine engine = ModelLoader.LoadOffline(new EngineArgs { Model = RepoPaths.DefaultModel, MaxModelLen = 256, Seed = 1 }).Engine)
        {
            plain = Tokens(engine.Generate(requests));
        }

        using (LlmEngine engine = ModelLoader.LoadOffline(new EngineArgs
        {
            Model = RepoPaths.DefaultModel,
            MaxModelLen = 256,
            Seed = 1,
            SpeculativeConfig = $$"""{"method": "draft_model", "model": {{draft}}, "num_speculative_tokens": 3}""",
        }).Engine)
        {
            speculative = Tokens(engine.Generate(requests));
            stats = engine.Stats.SpecDecoding;
        }

        Assert.Equal(plain, speculative);
        double rate = (double)stats.NumAcceptedTokens / stats.NumDraftTokens;
        TestContext.Current.SendDiagnosticMessage($"{stats.NumAcceptedTokens} of {stats.NumDraftTokens} drafts accepted, mean acceptance length {1 + (double)stats.NumAcceptedTokens / stats.NumDrafts:F2}");
        Assert.True(rate >= 0.3, $"{stats.NumAcceptedTokens} of {stats.NumDraftTokens} drafts accepted");
    }

    [Fact]
    public void A_draft_that_cannot_serve_the_target_is_refused_at_load()
    {
        string missing = Path.Combine(Path.GetTempPath(), "celer-no-such-draft-" + Guid.NewGuid().ToString("N"));
        var e = Assert.Throws<ModelLoadException>(() => Engine("llama-gqa-bf16-v4config",
            $$"""{"method": "draft_model", "model": {{System.Text.Json.JsonSerializer.Serialize(missing)}}, "num_speculative_tokens": 2}"""));
        Assert.Contains("does not exist", e.Message, StringComparison.Ordinal);

        // qwen2-bias-yarn-bf16 reaches 128 positions; the target is served at 256 here.
        e = Assert.Throws<ModelLoadException>(() => ModelLoader.LoadOffline(new EngineArgs
        {
            Model = Dir("llama-gqa-bf16-v4config"),
            MaxModelLen = 256,
            SpeculativeConfig = DraftConfig("qwen2-bias-yarn-bf16"),
        }));
        Assert.Contains("fewer than --max-model-len 256", e.Message, StringComparison.Ordinal);

        // celer-tiny-py's 8192 tokens against the fixture's 512.
        e = Assert.Throws<ModelLoadException>(() => Engine("llama-gqa-bf16-v4config",
            $$"""{"method": "draft_model", "model": {{System.Text.Json.JsonSerializer.Serialize(RepoPaths.DefaultModel)}}, "num_speculative_tokens": 2}"""));
        Assert.Contains("more than the target's 512", e.Message, StringComparison.Ordinal);
    }
}
