using Celer.Engine.Execution;
using Celer.Models.Config;
using Celer.TestSupport;

namespace Celer.Engine.Tests.Execution;

/// <summary>
/// The host KV tier through the whole engine on the CPU backend (scheduler, cache manager, runner, the backend's block
/// copies) with real checkpoints: conversations that return after a device pool too small for all of them load their
/// prefix from the host tier, and greedy outputs are token for token those of the same run without the tier and of a
/// pool that holds everything; preemption by swapping gives the same tokens too; salted prefixes are never shared.
/// </summary>
public sealed class KvOffloadEngineTests
{
    private const int BlockSize = 16;
    private const int MaxModelLen = 128;

    private static string FixtureModel(string name) => name == "celer-tiny-py" ? RepoPaths.DefaultModel : Path.Combine(RepoPaths.FixtureModels, name);

    /// <summary>KV bytes of one block on the CPU backend: keys and values, fp32, every layer.</summary>
    private static long BlockBytes(string model)
    {
        ModelConfig config = ModelConfig.Load(model);
        return 2L * config.NumHiddenLayers * BlockSize * config.NumKeyValueHeads * config.HeadDim * sizeof(float);
    }

    /// <param name="kvBlocks">Device blocks (the null block included); null: the default pool, which holds everything here.</param>
    /// <param name="hostBlocks">Blocks of the host tier (as a <c>--kv-offload-size</c> in GiB); 0: none.</param>
    private static LlmEngine Engine(
        string model, int? kvBlocks, int hostBlocks = 0, string preemptionMode = "recompute", int maxNumSeqs = 4, bool asyncScheduling = false) =>
        ModelLoader.LoadOffline(new EngineArgs
        {
            Model = model,
            MaxModelLen = MaxModelLen,
            MaxNumSeqs = maxNumSeqs,
            MaxNumBatchedTokens = 64,
            KvCacheMemoryBytes = kvBlocks * BlockBytes(model),
            KvOffloadSize = hostBlocks * BlockBytes(model) / (double)(1L << 30),
            PreemptionMode = preemptionMode,
            AsyncScheduling = asyncScheduling,
            Seed = 1,
        }).Engine;

    private static SamplingParams Greedy(int maxTokens) => new() { Temperature = 0, MaxTokens = maxTokens, IgnoreEos = true };

    private static List<int> Tokens(RequestOutput output) => [.. output.Outputs.SelectMany(o => o.TokenIdsDelta)];

    /// <summary>
    /// Five conversations of three turns, one request at a time, round robin: a 48-token first prompt (three blocks), then
    /// each turn the conversation so far plus eight new tokens; eight tokens generated per turn. Returns every turn's
    /// output in order.
    /// </summary>
    private static List<RequestOutput> Converse(LlmEngine engine)
    {
        var random = new Random(17);
        var histories = Enumerable.Range(0, 5).Select(_ => Enumerable.Range(0, 48).Select(_ => random.Next(engine.VocabSize)).ToList()).ToList();
        var outputs = new List<RequestOutput>();
        for (int turn = 0; turn < 3; turn++)
        {
            for (int c = 0; c < histories.Count; c++)
            {
                if (turn > 0)
                {
                    histories[c].AddRange(Enumerable.Range(0, 8).Select(_ => random.Next(engine.VocabSize)));
                }
                RequestOutput output = engine.Generate([new GenerateRequest($"c{c}t{turn}", [.. histories[c]], Greedy(8))])[0];
                outputs.Add(output);
                histories[c].AddRange(Tokens(output));
            }
        }
        return outputs;
    }

    /// <summary>
    /// Ten device blocks (nine usable: 144 tokens) against five conversations of up to 92 tokens: each returning
    /// conversation was evicted by the four before it. A 64-block host tier keeps them all; a 12-block one only the most
    /// recently used, evicting the rest in LRU order, which must still give the same tokens.
    /// </summary>
    [Theory]
    [InlineData("llama-gqa-bf16-v4config", 64)]
    [InlineData("celer-tiny-py", 64)]
    [InlineData("qwen3-headdim-qknorm-bf16", 12)]
    public void Returning_conversations_load_their_prefix_from_the_host_tier_with_identical_greedy_output(string name, int hostBlocks)
    {
        string model = FixtureModel(name);
        List<RequestOutput> reference, recomputed, offloaded;
        using (LlmEngine everything = Engine(model, kvBlocks: null))
        {
            reference = Converse(everything);
        }
        using (LlmEngine small = Engine(model, kvBlocks: 10))
        {
            recomputed = Converse(small);
            Assert.Null(small.Stats.KvOffload);
        }
        using LlmEngine offload = Engine(model, kvBlocks: 10, hostBlocks: hostBlocks);
        offloaded = Converse(offload);

        for (int i = 0; i < reference.Count; i++)
        {
            Assert.True(Tokens(reference[i]).SequenceEqual(Tokens(recomputed[i])), $"turn {i}: the small pool's output differs");
            Assert.True(Tokens(reference[i]).SequenceEqual(Tokens(offloaded[i])), $"turn {i}: the host tier's output differs");
        }

        // Turns 5.. return to a conversation: without the tier its blocks were gone; with it, they come back.
        Assert.All(recomputed.Skip(5), o => Assert.Equal(0, o.NumCachedTokens));
        KvOffloadTotals tier = offload.Stats.KvOffload!;
        Assert.True(tier.Counters.Hits > 0 && tier.LoadBytes == tier.Counters.LoadedBlocks * BlockBytes(model), $"{tier}");
        Assert.True(tier.StoreBytes > 0 && tier.StoreBytes == tier.Counters.StoredBlocks * BlockBytes(model), $"{tier}");
        if (hostBlocks == 64)
        {
            // Each returning turn gets at least the previous turn's prompt back: 48 tokens or more.
            Assert.All(offloaded.Skip(5), o => Assert.True(o.NumCachedTokens >= 48, $"{o.RequestId}: {o.NumCachedTokens} cached tokens"));
            Assert.Equal(0, tier.Counters.Evictions);
            Assert.Equal(offloaded.Skip(5).Sum(o => (long)o.NumCachedTokens), tier.Counters.Hits);
        }
        else
        {
            Assert.True(tier.Counters.Evictions > 0, "a 12-block host tier was meant to evict");
            Assert.Equal(1f, tier.Usage);
        }
    }

    /// <summary>
    /// Six requests of up to 94 tokens on ten blocks: preemption is certain. Swapped requests come back from the host tier
    /// (their resumption computes only the tokens after what they swapped) and every output is the one a pool that holds
    /// them all gives.
    /// </summary>
    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void Preemption_by_swapping_gives_identical_greedy_output(bool asyncScheduling)
    {
        string model = FixtureModel("llama-gqa-bf16-v4config");
        var random = new Random(23);
        List<GenerateRequest> requests = [.. Enumerable.Range(0, 6).Select(i => new GenerateRequest(
            $"r{i}", [.. Enumerable.Range(0, 30 + i).Select(_ => random.Next(500))], Greedy(64)))];
        IReadOnlyList<RequestOutput> expected;
        using (LlmEngine everything = Engine(model, kvBlocks: null, maxNumSeqs: 6))
        {
            expected = everything.Generate(requests);
        }

        using LlmEngine swapping = Engine(model, kvBlocks: 10, hostBlocks: 64, preemptionMode: "swap", maxNumSeqs: 6, asyncScheduling: asyncScheduling);
        IReadOnlyList<RequestOutput> outputs = swapping.Generate(requests);

        for (int i = 0; i < requests.Count; i++)
        {
            Assert.True(Tokens(expected[i]).SequenceEqual(Tokens(outputs[i])), $"request {i}: the swapped run's output differs");
        }
        EngineStats stats = swapping.Stats;
        Assert.True(stats.NumPreemptions > 0, "the pool was meant to be small enough to preempt");
        Assert.True(stats.KvOffload!.Counters.LoadedBlocks > 0, "preempted requests were meant to come back from the host tier");
        Assert.Equal(0, stats.NumRunning + stats.NumWaiting);
        Assert.Equal(0f, stats.KvCacheUsage);
    }

    [Fact]
    public void Salted_prefixes_are_shared_only_under_the_same_salt_on_the_device_and_in_the_host_tier()
    {
        string model = FixtureModel("llama-gqa-bf16-v4config");
        using LlmEngine engine = Engine(model, kvBlocks: 10, hostBlocks: 64);
        int[] prompt = [.. Enumerable.Range(0, 50).Select(i => (i * 31 + 7) % 500)];
        RequestOutput Run(string id, string? salt, int[]? tokens = null) =>
            engine.Generate([new GenerateRequest(id, tokens ?? prompt, Greedy(4), CacheSalt: salt)])[0];

        Assert.Equal(0, Run("a", "tenant-1").NumCachedTokens);
        Assert.Equal(0, Run("b", "tenant-2").NumCachedTokens);   // the device holds a's blocks, under another salt
        Assert.Equal(0, Run("c", null).NumCachedTokens);
        Assert.Equal(48, Run("d", "tenant-1").NumCachedTokens);

        // Other prompts push everything out of the nine device blocks into the host tier.
        for (int i = 0; i < 3; i++)
        {
            Run($"filler{i}", null, [.. Enumerable.Range(0, 100).Select(t => (t * 13 + i * 101 + 3) % 500)]);
        }
        long hostHitsBefore = engine.Stats.KvOffload!.Counters.Hits;
        Assert.Equal(0, Run("e", "tenant-3").NumCachedTokens);
        Assert.Equal(48, Run("f", "tenant-2").NumCachedTokens);
        Assert.Equal(48, engine.Stats.KvOffload!.Counters.Hits - hostHitsBefore);
    }

    [Fact]
    public void An_empty_cache_salt_is_refused_as_vllm_refuses_it()
    {
        using LlmEngine engine = Engine(FixtureModel("llama-gqa-bf16-v4config"), kvBlocks: 10);
        var error = Assert.Throws<EngineRequestException>(() => engine.Generate([new GenerateRequest("r", [1, 2, 3], Greedy(2), CacheSalt: "")]));
        Assert.Equal("Parameter 'cache_salt' must be a non-empty string if provided.", error.Message);
        Assert.Equal("cache_salt", error.Param);
    }

    [Fact]
    public void Bad_offload_settings_are_refused_naming_the_flag()
    {
        string model = FixtureModel("llama-gqa-bf16-v4config");
        string Refusal(EngineArgs args) => Assert.ThrowsAny<ArgumentException>(() => ModelLoader.LoadOffline(args)).Message;

        Assert.Contains("--kv-offload-size must be a non-negative", Refusal(new EngineArgs { Model = model, KvOffloadSize = -1 }), StringComparison.Ordinal);
        Assert.Contains("--kv-offload-size must be a non-negative", Refusal(new EngineArgs { Model = model, KvOffloadSize = double.NaN }), StringComparison.Ordinal);
        Assert.Contains("more than this machine's memory", Refusal(new EngineArgs { Model = model, KvOffloadSize = 1 << 30 }), StringComparison.Ordinal);
        Assert.Contains("smaller than one KV block", Refusal(new EngineArgs { Model = model, KvOffloadSize = 1e-9 }), StringComparison.Ordinal);
        Assert.Contains("--preemption-mode swap swaps into the host tier", Refusal(new EngineArgs { Model = model, PreemptionMode = "swap" }), StringComparison.Ordinal);
        Assert.Contains("--preemption-mode must be", Refusal(new EngineArgs { Model = model, PreemptionMode = "drop" }), StringComparison.Ordinal);
        Assert.Contains("it needs prefix caching", Refusal(new EngineArgs { Model = model, KvOffloadSize = 0.01, EnablePrefixCaching = false }), StringComparison.Ordinal);
    }
}
