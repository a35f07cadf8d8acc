using Celer.Engine.Execution;
using Celer.Engine.Scheduling;
using Celer.Engine.Tests.Support;
using Celer.Models.Config;
using Celer.TestSupport;
using Xunit;

namespace Celer.Engine.Tests.Speculative;

/// <summary>
/// EAGLE and EAGLE-3 speculative decoding through the whole engine on the CPU, with random heads written in the public
/// layouts. A random head's drafts are mostly rejected, so greedy output must equal decoding without drafts through the
/// rejection path. That its KV cache follows the target (slots of rejected drafts left alone, chunked prompts, chained
/// passes at the right positions) is checked by proposing again from scratch: a request whose prompt is the tokens a
/// draft followed must get the same draft from one prefill as the long-running request got step by step. What the head
/// computes is checked against a PyTorch reference with the default model's trained head.
/// </summary>
public sealed class EagleSpeculativeTests
{
    public static TheoryData<string> Models() => SpeculativeDecodingTests.Models();

    private static string Dir(string name) => Path.Combine(RepoPaths.FixtureModels, name);

    private static string Config(string head, EagleKind kind, int k = 3, string extra = "") =>
        $$"""{"method": "{{(kind == EagleKind.Eagle ? "eagle" : "eagle3")}}", "model": {{System.Text.Json.JsonSerializer.Serialize(head)}}, "num_speculative_tokens": {{k}}{{extra}}}""";

    private static (LlmEngine Engine, DraftRecorder? Recorder) Engine(
        string name, string? speculative, int? kvBlocks = null, int maxNumBatchedTokens = 64, bool prefixCaching = true)
    {
        ModelConfig config = ModelConfig.Load(Dir(name));
        // Each block also holds the head's one layer of KV (as wide as the target's, in these heads).
        long blockBytes = 2L * (config.NumHiddenLayers + (speculative is null ? 0 : 1)) * 16 * config.NumKeyValueHeads * config.HeadDim * sizeof(float);
        DraftRecorder? recorder = null;
        LlmEngine engine = ModelLoader.LoadOffline(
            new EngineArgs
            {
                Model = Dir(name),
                MaxModelLen = 128,
                MaxNumSeqs = 16,
                MaxNumBatchedTokens = maxNumBatchedTokens,
                KvCacheMemoryBytes = kvBlocks is int blocks ? blocks * blockBytes : null,
                Seed = 1,
                Quantization = config.Quantization?.Method,
                SpeculativeConfig = speculative,
                EnablePrefixCaching = prefixCaching,
            },
            wrapExecutor: speculative is null ? null : runner => recorder = new DraftRecorder(runner)).Engine;
        return (engine, recorder);
    }

    private static List<GenerateRequest> FixtureRequests(string name, SamplingParams sampling) =>
        [.. ReferenceFixture.Load(Path.Combine(Dir(name), "reference.json")).Cases.Select((c, i) => new GenerateRequest($"r{i}", c.PromptTokenIds, sampling))];

    /// <summary>Sixteen prompts of 5..20 tokens.</summary>
    private static List<GenerateRequest> ManyRequests(SamplingParams sampling) =>
        [.. Enumerable.Range(0, 16).Select(i => new GenerateRequest($"r{i:D2}", [.. Enumerable.Range(0, 5 + i).Select(t => (t * 7 + i) % 50 + 3)], sampling))];

    private static Dictionary<string, List<int>> Tokens(IReadOnlyList<RequestOutput> outputs) =>
        outputs.GroupBy(o => o.RequestId).ToDictionary(g => g.Key, g => g.SelectMany(o => o.Outputs.SelectMany(c => c.TokenIdsDelta)).ToList(), StringComparer.Ordinal);

    private static readonly SamplingParams Greedy = new() { Temperature = 0, MaxTokens = 40, IgnoreEos = true };

    private static (Dictionary<string, List<int>> Tokens, SpecDecodingStats Stats, long Preemptions, DraftRecorder? Recorder) Run(
        string name, string? speculative, List<GenerateRequest> requests, int? kvBlocks = null, int maxNumBatchedTokens = 64, bool prefixCaching = true)
    {
        (LlmEngine engine, DraftRecorder? recorder) = Engine(name, speculative, kvBlocks, maxNumBatchedTokens, prefixCaching);
        using (engine)
        {
            Dictionary<string, List<int>> tokens = Tokens(engine.Generate(requests));
            return (tokens, engine.Stats.SpecDecoding, engine.Stats.NumPreemptions, recorder);
        }
    }

    [Theory]
    [MemberData(nameof(Models))]
    public void A_random_eagle3_head_leaves_greedy_output_unchanged(string name)
    {
        string head = RandomEagleHead.Write(Dir(name), EagleKind.Eagle3);
        var (plain, _, _, _) = Run(name, null, FixtureRequests(name, Greedy));
        var (speculative, stats, _, _) = Run(name, Config(head, EagleKind.Eagle3), FixtureRequests(name, Greedy));

        Assert.Equal(plain, speculative);
        Assert.True(stats.NumDraftTokens > 0, $"{name}: no drafts were proposed");
    }

    /// <summary>
    /// Every draft the long-running requests got (greedy, a token budget of 16 that splits prompts over steps, drafts
    /// mostly rejected) is proposed again from one prefill of the tokens it followed, by a fresh engine: the two must be
    /// the same drafts. Prefix caching is off in both, since a shared block's last head entry saw another request's next token.
    /// </summary>
    [Theory]
    [InlineData(EagleKind.Eagle3)]
    [InlineData(EagleKind.Eagle)]
    public void Drafts_proposed_step_by_step_equal_drafts_proposed_from_one_prefill(EagleKind kind)
    {
        const string Name = "llama-gqa-bf16-v4config";
        string head = RandomEagleHead.Write(Dir(Name), kind);
        string spec = Config(head, kind);
        var sampling = Greedy with { MaxTokens = 24 };
        List<GenerateRequest> requests = ManyRequests(sampling)[..6];
        var (tokens, _, _, recorder) = Run(Name, spec, requests, maxNumBatchedTokens: 16, prefixCaching: false);

        Dictionary<string, int[]> prompts = requests.ToDictionary(r => r.RequestId, r => r.PromptTokenIds.ToArray(), StringComparer.Ordinal);
        var fresh = new List<GenerateRequest>();
        var expected = new Dictionary<string, int[]>(StringComparer.Ordinal);
        foreach (((string id, int length), int[] drafts) in recorder!.Drafts)
        {
            int[] all = [.. prompts[id], .. tokens[id]];
            // The fresh request's prompt stops one short: its one sampled token completes the L tokens the draft followed.
            string freshId = $"{id}@{length}";
            fresh.Add(new GenerateRequest(freshId, all[..(length - 1)], sampling with { MaxTokens = 1 }));
            expected[freshId] = drafts;
        }

        var (_, _, _, again) = Run(Name, spec, fresh, maxNumBatchedTokens: 128, prefixCaching: false);
        int same = 0;
        foreach ((string freshId, int[] drafts) in expected)
        {
            int length = int.Parse(freshId[(freshId.IndexOf('@') + 1)..], System.Globalization.CultureInfo.InvariantCulture);
            same += again!.Drafts.TryGetValue((freshId, length), out int[]? other) && other.SequenceEqual(drafts) ? 1 : 0;
        }

        TestContext.Current.SendDiagnosticMessage($"{kind}: {same} of {expected.Count} draft lists equal");
        // fp32 on both sides; only a near-tie computed in another batch shape may come out otherwise (none did when this
        // was written: 144 of 144 and 143 of 143). A chained pass one position off still agrees on ~96 %, hence the bar.
        Assert.True(expected.Count > 50, $"only {expected.Count} drafts were proposed");
        Assert.True(same >= 0.99 * expected.Count, $"{same} of {expected.Count} draft lists equal");
    }

    /// <summary>A pool of 13 blocks for 16 sequences preempts requests, whose blocks (and the head's entries) start over.</summary>
    [Fact]
    public void Preemption_and_small_budgets_leave_greedy_output_unchanged()
    {
        const string Name = "llama-gqa-bf16-v4config";
        string head = RandomEagleHead.Write(Dir(Name), EagleKind.Eagle3);
        var (plain, _, _, _) = Run(Name, null, ManyRequests(Greedy), kvBlocks: 13, maxNumBatchedTokens: 16);
        var (speculative, stats, preemptions, _) = Run(Name, Config(head, EagleKind.Eagle3, k: 4), ManyRequests(Greedy), kvBlocks: 13, maxNumBatchedTokens: 16);

        Assert.True(preemptions > 0, "the pool was meant to force preemptions");
        Assert.Equal(plain, speculative);
        Assert.True(stats.NumDraftTokens > 0);
    }

    [Fact]
    public void Seeded_sampling_with_an_eagle_head_is_reproducible()
    {
        const string Name = "qwen3-moe-bf16";
        string head = RandomEagleHead.Write(Dir(Name), EagleKind.Eagle);
        var sampling = new SamplingParams { Temperature = 0.8f, TopP = 0.9f, Seed = 7, MaxTokens = 40, IgnoreEos = true };
        var (first, _, _, _) = Run(Name, Config(head, EagleKind.Eagle), FixtureRequests(Name, sampling));
        var (second, _, _, _) = Run(Name, Config(head, EagleKind.Eagle), FixtureRequests(Name, sampling));

        Assert.Equal(first, second);
        Assert.All(first.Values, tokens => Assert.Equal(40, tokens.Count));
    }

    /// <summary>
    /// With disable_by_batch_size the four fixture requests decoding together draft nothing, yet the head still follows
    /// every step: once two have finished (max_tokens 8 and 40) the other two draft from a cache without holes, which the
    /// equality with the drafts of an engine that drafted all along shows.
    /// </summary>
    [Fact]
    public void A_step_too_large_to_draft_for_still_fills_the_heads_cache()
    {
        const string Name = "llama-gqa-bf16-v4config";
        string head = RandomEagleHead.Write(Dir(Name), EagleKind.Eagle3);
        List<GenerateRequest> requests = [.. FixtureRequests(Name, Greedy).Select((r, i) => i < 2 ? r with { Params = Greedy with { MaxTokens = 8 } } : r)];
        var (_, limitedStats, _, limited) = Run(Name, Config(head, EagleKind.Eagle3, extra: ", \"disable_by_batch_size\": 3"), requests, maxNumBatchedTokens: 512, prefixCaching: false);
        var (_, _, _, always) = Run(Name, Config(head, EagleKind.Eagle3), requests, maxNumBatchedTokens: 512, prefixCaching: false);

        Assert.True(limitedStats.NumDraftTokens > 0, "the two requests left should draft");
        foreach (((string id, int length), int[] drafts) in limited!.Drafts)
        {
            // Accepted drafts may make the two runs reach different lengths; where both drafted, they agree.
            if (always!.Drafts.TryGetValue((id, length), out int[]? other))
            {
                Assert.Equal(other, drafts);
            }
        }
    }

    /// <summary>
    /// The default model's shipped EAGLE-3 head (models/celer-tiny-py-eagle3, trained by tools/train/train_eagle3_head.py)
    /// against the trainer's own PyTorch head: eagle3-drafts.json holds, for each fixture prompt's greedy continuation,
    /// the drafts the PyTorch head (fp32, from the saved weights, the target's hidden states from transformers) chains
    /// after every prefix. Celer's drafts after the same tokens must be those, or at a near-tie within the reference's
    /// top 5; a chained draft is compared while the drafts before it agree. Greedy output stays that of plain decoding,
    /// and the acceptance length is near the trainer's simulated 2.73.
    /// </summary>
    [Fact]
    public void The_default_models_eagle3_head_drafts_what_pytorch_drafts()
    {
        using var document = System.Text.Json.JsonDocument.Parse(File.ReadAllText(Path.Combine(RepoPaths.Fixtures, "celer-tiny-py", "eagle3-drafts.json")));
        var cases = document.RootElement.GetProperty("cases").EnumerateArray().Select((c, i) => (
            Id: $"r{i}",
            Tokens: c.GetProperty("token_ids").EnumerateArray().Select(t => t.GetInt32()).ToArray(),
            PromptLength: c.GetProperty("prompt_length").GetInt32(),
            Drafts: c.GetProperty("drafts").EnumerateArray().ToDictionary(
                d => d.GetProperty("length").GetInt32(),
                d => (Ids: d.GetProperty("draft_ids").EnumerateArray().Select(t => t.GetInt32()).ToArray(),
                      Top: d.GetProperty("top5").EnumerateArray().Select(row => row.EnumerateArray().Select(t => t.GetInt32()).ToArray()).ToArray())))).ToList();
        var sampling = new SamplingParams { Temperature = 0, MaxTokens = 48, IgnoreEos = true };
        List<GenerateRequest> requests = [.. cases.Select(c => new GenerateRequest(c.Id, c.Tokens[..c.PromptLength], sampling))];
        string head = System.Text.Json.JsonSerializer.Serialize(Path.Combine(RepoPaths.Root, "models", "celer-tiny-py-eagle3"));

        Dictionary<string, List<int>> plain, speculative;
        using (LlmEngine engine = ModelLoader.LoadOffline(new EngineArgs { Model = RepoPaths.DefaultModel, MaxModelLen = 256, Seed = 1 }).Engine)
        {
            plain = Tokens(engine.Generate(requests));
        }

        DraftRecorder? recorder = null;
        SpecDecodingStats stats;
        var args = new EngineArgs
        {
            Model = RepoPaths.DefaultModel, MaxModelLen = 256, Seed = 1, EnablePrefixCaching = false,
            SpeculativeConfig = $$"""{"method": "eagle3", "model": {{head}}, "num_speculative_tokens": 3}""",
        };
        using (LlmEngine engine = ModelLoader.LoadOffline(args, wrapExecutor: runner => recorder = new DraftRecorder(runner)).Engine)
        {
            speculative = Tokens(engine.Generate(requests));
            stats = engine.Stats.SpecDecoding;
        }

        Assert.Equal(plain, speculative);
        int compared = 0, firstEqual = 0, chainedCompared = 0, chainedEqual = 0;
        foreach (var c in cases)
        {
            int[] ours = [.. c.Tokens[..c.PromptLength], .. speculative[c.Id]];
            foreach (((string id, int length), int[] drafts) in recorder!.Drafts.Where(d => d.Key.RequestId == c.Id))
            {
                // Only where Celer's tokens so far are the reference's (its continuation is transformers' greedy one).
                if (!c.Drafts.TryGetValue(length, out var reference) || !ours.AsSpan(0, length).SequenceEqual(c.Tokens.AsSpan(0, length)))
                {
                    continue;
                }

                compared++;
                for (int i = 0; i < drafts.Length; i++)
                {
                    Assert.True(reference.Top[i].Contains(drafts[i]), $"{id} after {length} tokens: draft {i} is {drafts[i]}, not in the reference's top 5 [{string.Join(", ", reference.Top[i])}]");
                    bool equal = drafts[i] == reference.Ids[i];
                    (firstEqual, chainedCompared, chainedEqual) = i == 0
                        ? (firstEqual + (equal ? 1 : 0), chainedCompared, chainedEqual)
                        : (firstEqual, chainedCompared + 1, chainedEqual + (equal ? 1 : 0));
                    if (!equal)
                    {
                        break;
                    }
                }
            }
        }

        double acceptance = 1 + ((double)stats.NumAcceptedTokens / stats.NumDrafts);
        TestContext.Current.SendDiagnosticMessage(
            $"{compared} prefixes compared: first drafts equal {firstEqual}, chained drafts equal {chainedEqual} of {chainedCompared}; mean acceptance length {acceptance:F2}");
        Assert.True(compared >= 60, $"only {compared} prefixes compared");
        // All were equal when this was written (112 and 224); a chained pass one position off still gets ~95 % of them.
        Assert.True(firstEqual >= 0.98 * compared, $"{firstEqual} of {compared} first drafts equal the reference's");
        Assert.True(chainedEqual >= 0.98 * chainedCompared, $"{chainedEqual} of {chainedCompared} chained drafts equal the reference's");
        Assert.True(acceptance >= 2.2, $"mean acceptance length {acceptance:F2}");
    }

    [Theory]
    [InlineData("target_hidden_size", "128", "hidden states of width 128, but the target's are 64 wide")]
    [InlineData("eagle_aux_hidden_state_layer_ids", "[0, 1, 7]", "the target has 3 layers")]
    [InlineData("draft_vocab_size", "1024", "at most vocab_size (512)")]
    [InlineData("num_hidden_layers", "2", "Celer runs heads of one layer")]
    public void A_head_that_does_not_fit_the_target_is_refused_at_load(string field, string value, string message)
    {
        const string Name = "llama-gqa-bf16-v4config";
        string head = RandomEagleHead.Write(Dir(Name), EagleKind.Eagle3);
        string path = Path.Combine(head, "config.json");
        var config = System.Text.Json.Nodes.JsonNode.Parse(File.ReadAllText(path))!.AsObject();
        config[field] = System.Text.Json.Nodes.JsonNode.Parse(value);
        File.WriteAllText(path, config.ToJsonString());

        var e = Assert.ThrowsAny<Exception>(() => Run(Name, Config(head, EagleKind.Eagle3), FixtureRequests(Name, Greedy)));
        Assert.Contains(message, e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void An_eagle3_head_named_as_eagle_is_refused_by_name()
    {
        const string Name = "llama-gqa-bf16-v4config";
        string head = RandomEagleHead.Write(Dir(Name), EagleKind.Eagle3);
        var e = Assert.ThrowsAny<Exception>(() => Run(Name, Config(head, EagleKind.Eagle), FixtureRequests(Name, Greedy)));
        Assert.Contains("use the method \"eagle3\"", e.Message, StringComparison.Ordinal);
    }
}
