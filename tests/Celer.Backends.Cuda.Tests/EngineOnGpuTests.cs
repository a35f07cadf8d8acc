using Celer.Engine;
using Celer.Engine.Execution;
using Celer.Engine.Scheduling;
using Celer.Engine.Tests.Support;
using Celer.Models.Config;
using Celer.Models.Weights;
using Celer.TestSupport;

namespace Celer.Backends.Cuda.Tests;

/// <summary>
/// The whole engine with --device cuda on the transformers fixture models: greedy output against transformers
/// (fp32 reference) served in fp32 and in the default dtype (bf16 for every fixture), the batching invariant, graphs
/// against eager, and a prefix-cache hit. The invariance tests run in fp32: in bf16 a different row count may pick
/// another GEMM algorithm or attention split and round differently, which can flip a near-tie on a random tiny model.
/// </summary>
public sealed class EngineOnGpuTests
{
    // vLLM's criterion for a lower-precision run: equal until the first divergence, then each token in the
    // other's top-5. The logprob bound only catches gross errors: with bf16 activations (8-bit mantissas through every
    // layer) a chosen token's logprob drifts from the fp32 reference by up to ~0.2 on these random tiny models
    // (llama-gqa-bf16-v4config: −0.748 vs −0.575 at step 11, tokens still identical), and the same models pass in fp32.
    private const float Bf16LogprobTolerance = 0.35f;

    // A MoE model's routing is discontinuous: in bf16 a router logit rounded differently from the fp32 reference (or by
    // another GEMM algorithm the tuner times faster on the day) can swap one token's expert in one layer, moving a
    // chosen token's logprob by more than the dense bound while the tokens stay identical (qwen2-moe-shared-expert:
    // −0.137 vs −0.523 at step 5, qwen3-moe: −0.908 vs −0.556 at step 11, on the H200 2026-11-30; both 96/96 in fp32).
    // The token criterion still holds them, as vLLM's check for MoE models does.
    internal const float Bf16MoeLogprobTolerance = 1.0f;

    // In fp32 the GPU must agree with transformers as closely as the CPU backend does (ReferenceParityTests): the
    // fixtures keep a top-1/top-2 margin of at least 3e-3 at every step, so no token may diverge.
    private const float Fp32LogprobTolerance = 2e-3f;

    // An FP8 W8A8 fixture quantizes every layer's input, so an input that lands on the other side of an E4M3 rounding
    // boundary moves every later logprob of these random tiny models. In fp32 the GPU is held to vLLM's token criterion (a
    // divergence allowed where each side's token is in the other's top-5); its tensor-core FP8 GEMMs sum in another order
    // and precision than the CPU's fp32 loops, and case 0 of each fixture parted after 5 to 9 of 24 tokens on the H200
    // (2026-11-30; the CPU keeps at least half, ReferenceParityTests). In 16 bits every input moves by up to a rounding
    // step, and the first divergence came after 1 to 16 tokens, sometimes with neither token in the other's top-5 (bf16:
    // llama-fp8-tensor-static; fp16: llama-fp8-block128): there the run is checked for complete, finite output only. The
    // layers themselves are held to the CPU's W8A8 by Fp8GemmTests: the quantized inputs bit for bit, the products within
    // 16-bit rounding.
    private const float Fp8LogprobTolerance = float.PositiveInfinity;

    // Cases where transformers itself, run in bf16, leaves the fp32 reference's top-5 (tools/reference/dtype_drift.py on
    // the H200, 2026-11-30), with the steps it keeps: no bf16 engine can be held to the criterion past them. gpt-oss case 2:
    // at step 14 a routing flip makes transformers in bf16 choose 291 where fp32 chose 73, neither in the other's top-5,
    // and Celer in bf16 chooses 291 too. Such a case must match the reference token for token up to that step.
    private static readonly Dictionary<(string Fixture, int Case), int> Bf16ReferenceDrift = new()
    {
        [("gpt-oss-sinks-moe-bf16", 2)] = 14,
    };

    /// <param name="asyncScheduling">Null: the default, which on CUDA is async scheduling.</param>
    private static LlmEngine Engine(
        string model, int? maxNumBatchedTokens = null, int maxNumSeqs = 16, bool enforceEager = false, string dtype = "float32", string kvCacheDtype = "auto",
        bool? asyncScheduling = null, string? speculativeConfig = null) =>
        ModelLoader.LoadOffline(new EngineArgs
        {
            SpeculativeConfig = speculativeConfig,
            Model = model,
            Device = "cuda",
            Dtype = dtype,
            KvCacheDtype = kvCacheDtype,
            MaxModelLen = 128,
            MaxNumSeqs = maxNumSeqs,
            MaxNumBatchedTokens = maxNumBatchedTokens,
            KvCacheMemoryBytes = 64L << 20,
            EnforceEager = enforceEager,
            AsyncScheduling = asyncScheduling,
        }).Engine;

    private static List<int> Tokens(RequestOutput output) => output.Outputs.SelectMany(o => o.TokenIdsDelta).ToList();

    public static TheoryData<string, string> Models() =>
        new(RepoPaths.FixtureModelNames().SelectMany(m => new[] { (m, "float32"), (m, "auto") }));

    [Theory]
    [MemberData(nameof(Models))]
    public void Greedy_output_matches_transformers(string name, string dtype)
    {
        Gpu.Require();
        string dir = Path.Combine(RepoPaths.FixtureModels, name);
        ModelConfig config = ModelConfig.Load(dir);
        if (config.Quantization is { BlockRows: not (0 or CudaBackend.Fp8ScaleBlock) })
        {
            // cuBLASLt scales blocks of 128 only: the loader says so.
            var refused = Assert.Throws<ModelLoadException>(() => Engine(dir, dtype: dtype));
            Assert.Contains("weight blocks", refused.Message, StringComparison.Ordinal);
            return;
        }

        ReferenceFixture fixture = ReferenceFixture.Load(Path.Combine(dir, "reference.json"));
        using LlmEngine engine = Engine(dir, maxNumBatchedTokens: 32, dtype: dtype);
        var requests = fixture.Cases.Select((c, i) => new GenerateRequest(
            $"r{i}", c.PromptTokenIds, new SamplingParams { Temperature = 0, MaxTokens = c.OutputTokenIds.Count, IgnoreEos = true, Logprobs = 5 })).ToList();

        IReadOnlyList<RequestOutput> outputs = engine.Generate(requests);
        // W8A8 checkpoints round every layer's input to FP8; weight-only ones (integer codes) compute with exactly the
        // dequantized weights of the reference in fp32, and with them rounded to the model dtype otherwise, as any model.
        bool inputsQuantized = config.Quantization is { Activations: not null };
        float tolerance = inputsQuantized ? Fp8LogprobTolerance
            : dtype == "float32" ? Fp32LogprobTolerance
            : config.Moe is null ? Bf16LogprobTolerance : Bf16MoeLogprobTolerance;
        int matched = 0, total = 0;
        for (int i = 0; i < requests.Count; i++)
        {
            var positions = GeneratedPositions.Of(outputs[i]);
            int count = fixture.Cases[i].OutputTokenIds.Count;
            if (dtype != "float32" && Bf16ReferenceDrift.TryGetValue((name, i), out int kept))
            {
                int equal = positions.Zip(fixture.Cases[i].OutputTokenIds).TakeWhile(pair => pair.First.TokenId == pair.Second).Count();
                Assert.True(equal >= kept, $"{name} case {i}: {equal} tokens identical, where transformers in bf16 keeps {kept}");
                matched += equal;
            }
            else if (inputsQuantized && dtype != "float32")
            {
                Assert.Equal(count, positions.Count);
                Assert.All(positions, p => Assert.True(float.IsFinite(p.Logprob), $"{name} case {i}: logprob {p.Logprob}"));
                matched += positions.Zip(fixture.Cases[i].OutputTokenIds).TakeWhile(pair => pair.First.TokenId == pair.Second).Count();
            }
            else
            {
                int caseMatched = LogprobsComparison.AssertClose($"{name} case {i}", fixture.Cases[i].OutputLogprobs, positions, tolerance);
                int required = dtype == "float32" && !inputsQuantized ? count : 0;
                Assert.True(caseMatched >= required, $"{name} case {i}: {caseMatched} of {count} tokens identical before the first divergence");
                matched += caseMatched;
            }

            total += count;
        }

        TestContext.Current.SendDiagnosticMessage($"{name} ({dtype}): {matched}/{total} greedy tokens identical to transformers before any divergence");
    }

    // qwen3-headdim-qknorm-bf16 is left out: under E4M3 it diverges at step 2 with tokens outside each other's top-5
    // (2026-11-29 on the H200), while the attention kernels pass the exact-value FP8 operator tests at its head size
    // (OperatorParityTests); whether that is E4M3 precision on this random q/k-normed model is open (issue 9's note).
    [Theory]
    [InlineData("llama-gqa-bf16-v4config", "fp8_e5m2")]
    [InlineData("mistral-sliding-window-f16", "fp8_e4m3")]
    public void Greedy_output_over_an_fp8_kv_cache_follows_transformers(string name, string kvCacheDtype)
    {
        Gpu.Require();
        // vLLM's criterion on tokens alone, as its FP8 KV-cache tests compare (check_logprobs_close): FP8 keys and
        // values (3 or 2 mantissa bits) move these random tiny models' logprobs by up to ~1 (−1.34 vs −0.36 seen), so
        // no bound on them; a broken cache diverges at once outside the top-5. No k_scale/v_scale here: scales are 1.0.
        string dir = Path.Combine(RepoPaths.FixtureModels, name);
        ReferenceFixture fixture = ReferenceFixture.Load(Path.Combine(dir, "reference.json"));
        using LlmEngine engine = Engine(dir, maxNumBatchedTokens: 32, dtype: "auto", kvCacheDtype: kvCacheDtype);
        var requests = fixture.Cases.Select((c, i) => new GenerateRequest(
            $"r{i}", c.PromptTokenIds, new SamplingParams { Temperature = 0, MaxTokens = c.OutputTokenIds.Count, IgnoreEos = true, Logprobs = 5 })).ToList();
        IReadOnlyList<RequestOutput> outputs = engine.Generate(requests);
        int matched = 0;
        for (int i = 0; i < requests.Count; i++)
        {
            var positions = GeneratedPositions.Of(outputs[i]);
            matched += LogprobsComparison.AssertClose($"{name} case {i}", fixture.Cases[i].OutputLogprobs, positions, float.PositiveInfinity);
        }

        TestContext.Current.SendDiagnosticMessage($"{name} ({kvCacheDtype} KV): {matched} greedy tokens identical to transformers before any divergence");
    }

    [Fact]
    public void Batched_output_equals_solo_output_and_a_shared_prefix_is_cached()
    {
        Gpu.Require();
        string dir = Path.Combine(RepoPaths.FixtureModels, "qwen3-headdim-qknorm-bf16");
        var random = new Random(5);
        int[] prefix = Enumerable.Range(0, 32).Select(_ => random.Next(512)).ToArray();
        var requests = Enumerable.Range(0, 12).Select(i => new GenerateRequest(
            $"r{i}",
            (i % 2 == 0 ? prefix : []).Concat(Enumerable.Range(0, random.Next(1, 40)).Select(_ => random.Next(512))).ToList(),
            new SamplingParams { Temperature = 0, MaxTokens = random.Next(1, 20), IgnoreEos = true })).ToList();

        long prefixHits = AssertBatchedEqualsSolo(dir, requests);
        Assert.True(prefixHits >= 32 * 5, $"prefix cache hits {prefixHits}");
    }

    /// <summary>
    /// Runs each request alone, then all together under a 16-token budget and 8 sequences (chunked prefill, mixed
    /// steps), and requires the same tokens; returns the batched engine's prefix-cache hits.
    /// </summary>
    private static long AssertBatchedEqualsSolo(string dir, List<GenerateRequest> requests)
    {
        var solo = new List<List<int>>();
        using (LlmEngine alone = Engine(dir))
        {
            solo.AddRange(requests.Select(r => Tokens(alone.Generate([r])[0])));
        }

        using LlmEngine batched = Engine(dir, maxNumBatchedTokens: 16, maxNumSeqs: 8);
        IReadOnlyList<RequestOutput> outputs = batched.Generate(requests);
        for (int i = 0; i < requests.Count; i++)
        {
            Assert.True(solo[i].SequenceEqual(Tokens(outputs[i])), $"request {i}: batched output differs from solo");
        }

        return batched.Stats.PrefixCacheHits;
    }

    [Fact]
    public void Seeded_sampling_on_the_gpu_is_the_same_alone_and_batched()
    {
        Gpu.Require();
        // Sampling runs on the GPU (every row samples, none asks prompt logprobs); each sequence keeps its own
        // generator, so its draws may not depend on what else is in the batch.
        string dir = Path.Combine(RepoPaths.FixtureModels, "qwen3-headdim-qknorm-bf16");
        var random = new Random(11);
        var requests = Enumerable.Range(0, 10).Select(i => new GenerateRequest(
            $"s{i}",
            Enumerable.Range(0, random.Next(1, 30)).Select(_ => random.Next(512)).ToList(),
            new SamplingParams { Temperature = 0.9f, TopP = 0.9f, TopK = 40, Seed = 100 + i, MaxTokens = 12, IgnoreEos = true, Logprobs = i % 3 })).ToList();

        AssertBatchedEqualsSolo(dir, requests);
    }

    /// <summary>
    /// Async scheduling feeds each decode its previous token from the GPU and samples with the history recorded one
    /// step late; every request must still get the tokens of synchronous steps, run alone: greedy and seeded, with
    /// penalties and min_tokens (they read the previous token), stop tokens (a step scheduled after the stop is
    /// dropped), in graphs and eagerly, through chunked prefill and mixed steps. No request asks for logprobs, which
    /// would make its steps synchronous.
    /// </summary>
    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void Async_scheduling_gives_every_request_the_tokens_of_synchronous_steps(bool enforceEager)
    {
        Gpu.Require();
        string dir = Path.Combine(RepoPaths.FixtureModels, "qwen3-headdim-qknorm-bf16");
        var random = new Random(enforceEager ? 21 : 22);
        var requests = Enumerable.Range(0, 14).Select(i => new GenerateRequest(
            $"a{i}",
            Enumerable.Range(0, random.Next(1, 40)).Select(_ => random.Next(512)).ToList(),
            new SamplingParams
            {
                Temperature = i % 2 == 0 ? 0 : 0.9f,
                TopP = 0.95f,
                Seed = 300 + i,
                MaxTokens = random.Next(4, 24),
                MinTokens = i % 3 == 0 ? 3 : 0,
                FrequencyPenalty = i % 4 == 1 ? 0.8f : 0,
                PresencePenalty = i % 4 == 2 ? 0.5f : 0,
                RepetitionPenalty = i % 4 == 3 ? 1.3f : 1,
                StopTokenIds = i % 5 == 0 ? [.. Enumerable.Range(0, 40).Select(_ => random.Next(512))] : [],
                IgnoreEos = true,
            })).ToList();

        var solo = new List<List<int>>();
        using (LlmEngine alone = Engine(dir, enforceEager: enforceEager, asyncScheduling: false))
        {
            solo.AddRange(requests.Select(r => Tokens(alone.Generate([r])[0])));
        }

        using LlmEngine overlapped = Engine(dir, maxNumBatchedTokens: 16, maxNumSeqs: 8, enforceEager: enforceEager, asyncScheduling: true);
        IReadOnlyList<RequestOutput> outputs = overlapped.Generate(requests);
        for (int i = 0; i < requests.Count; i++)
        {
            Assert.True(solo[i].SequenceEqual(Tokens(outputs[i])), $"request {i}: [{string.Join(' ', Tokens(outputs[i]))}] with async scheduling, [{string.Join(' ', solo[i])}] alone");
        }

        Assert.True(outputs.Any(o => o.Outputs[0].FinishReason == FinishReason.Stop), "a stop token was meant to end some request");
    }

    /// <summary>
    /// n-gram speculative decoding on the GPU: verification steps (eager; each draft's row sampled on the device, or with
    /// logprobs asked for, on the host) give the greedy tokens of plain decoding (recorded graphs, device sampling). In fp32 over the fixtures' lengths,
    /// where their top-1/top-2 margins keep another GEMM order from flipping a token; in 16 bits a verification step's
    /// GEMMs (more rows, other algorithms) round differently, as in any engine, so equality is not the criterion there.
    /// </summary>
    [Theory]
    [InlineData("qwen3-moe-bf16", false)]
    [InlineData("qwen3-moe-bf16", true)]
    [InlineData("gemma2-softcap-window-bf16", false)]
    [InlineData("llama-gqa-bf16-v4config", true)]
    [InlineData("gpt-oss-sinks-moe-bf16", false)]
    public void Greedy_output_with_ngram_drafts_equals_decoding_without_them(string name, bool logprobs)
    {
        const string dtype = "float32";
        Gpu.Require();
        string dir = Path.Combine(RepoPaths.FixtureModels, name);
        ReferenceFixture fixture = ReferenceFixture.Load(Path.Combine(dir, "reference.json"));
        var requests = fixture.Cases.Select((c, i) => new GenerateRequest(
            $"r{i}", c.PromptTokenIds, new SamplingParams { Temperature = 0, MaxTokens = c.OutputTokenIds.Count, IgnoreEos = true, Logprobs = logprobs ? 1 : null })).ToList();
        List<List<int>> plain, speculative;
        using (LlmEngine engine = Engine(dir, maxNumBatchedTokens: 64, dtype: dtype))
        {
            plain = engine.Generate(requests).Select(Tokens).ToList();
        }

        using (LlmEngine engine = Engine(dir, maxNumBatchedTokens: 64, dtype: dtype,
            speculativeConfig: """{"method": "ngram", "num_speculative_tokens": 3, "prompt_lookup_min": 1, "prompt_lookup_max": 2}"""))
        {
            speculative = engine.Generate(requests).Select(Tokens).ToList();
            Assert.True(engine.Stats.SpecDecoding.NumDraftTokens > 0, "no drafts were proposed");
            TestContext.Current.SendDiagnosticMessage($"{name}: {engine.Stats.SpecDecoding.NumAcceptedTokens} of {engine.Stats.SpecDecoding.NumDraftTokens} drafts accepted");
        }

        Assert.Equal(plain, speculative);
    }

    /// <summary>
    /// A draft model on the GPU: the model drafting for itself on a second backend that shares the device and stream, its
    /// own KV cache over the target's block tables, its one-token draft steps replayed from its own recorded graphs. In
    /// fp32 the greedy output equals plain decoding and nearly every draft is accepted (a wrong slot or position in the
    /// draft's cache would show as rejections); in bf16 the draft's other batch shapes round differently, so only
    /// acceptance is held to.
    /// </summary>
    [Theory]
    [InlineData("llama-gqa-bf16-v4config", "float32")]
    [InlineData("qwen3-moe-bf16", "float32")]
    [InlineData("gemma2-softcap-window-bf16", "float32")]
    [InlineData("llama-gqa-bf16-v4config", "bfloat16")]
    public void A_model_drafting_for_itself_on_the_gpu_has_its_drafts_accepted(string name, string dtype)
    {
        Gpu.Require();
        string dir = Path.Combine(RepoPaths.FixtureModels, name);
        ReferenceFixture fixture = ReferenceFixture.Load(Path.Combine(dir, "reference.json"));
        var requests = fixture.Cases.Select((c, i) => new GenerateRequest(
            $"r{i}", c.PromptTokenIds, new SamplingParams { Temperature = 0, MaxTokens = c.OutputTokenIds.Count, IgnoreEos = true })).ToList();
        List<List<int>> plain, speculative;
        using (LlmEngine engine = Engine(dir, maxNumBatchedTokens: 64, dtype: dtype))
        {
            plain = engine.Generate(requests).Select(Tokens).ToList();
        }

        string draft = $$"""{"method": "draft_model", "model": {{System.Text.Json.JsonSerializer.Serialize(dir)}}, "num_speculative_tokens": 3}""";
        using (LlmEngine engine = Engine(dir, maxNumBatchedTokens: 64, dtype: dtype, speculativeConfig: draft))
        {
            speculative = engine.Generate(requests).Select(Tokens).ToList();
            SpecDecodingStats stats = engine.Stats.SpecDecoding;
            TestContext.Current.SendDiagnosticMessage($"{name} {dtype}: {stats.NumAcceptedTokens} of {stats.NumDraftTokens} drafts accepted");
            Assert.True(stats.NumDraftTokens > 0, "no drafts were proposed");
            Assert.True(stats.NumAcceptedTokens >= 0.9 * stats.NumDraftTokens, $"{stats.NumAcceptedTokens} of {stats.NumDraftTokens} drafts accepted");
        }

        if (dtype == "float32")
        {
            Assert.Equal(plain, speculative);
        }
    }

    /// <summary>
    /// EAGLE heads on the GPU (random weights in the public layouts): the head on a second backend reading the target's
    /// embedding table and the hidden states its decode graphs copy out, its argmax over the draft vocabulary on the
    /// device sampler, mapped through d2t. In fp32 every draft it proposes is the one the CPU's head proposes after the
    /// same tokens, and greedy output equals plain decoding.
    /// </summary>
    [Theory]
    [InlineData(EagleKind.Eagle3)]
    [InlineData(EagleKind.Eagle)]
    public void An_eagle_head_on_the_gpu_drafts_what_it_drafts_on_the_cpu(EagleKind kind)
    {
        Gpu.Require();
        const string Name = "llama-gqa-bf16-v4config";
        string dir = Path.Combine(RepoPaths.FixtureModels, Name);
        string head = RandomEagleHead.Write(dir, kind);
        string spec = $$"""{"method": "{{(kind == EagleKind.Eagle ? "eagle" : "eagle3")}}", "model": {{System.Text.Json.JsonSerializer.Serialize(head)}}, "num_speculative_tokens": 3}""";
        ReferenceFixture fixture = ReferenceFixture.Load(Path.Combine(dir, "reference.json"));
        var requests = fixture.Cases.Select((c, i) => new GenerateRequest(
            $"r{i}", c.PromptTokenIds, new SamplingParams { Temperature = 0, MaxTokens = c.OutputTokenIds.Count, IgnoreEos = true })).ToList();

        (List<List<int>> Tokens, DraftRecorder Recorder) Run(string device, string? speculative)
        {
            DraftRecorder? recorder = null;
            using LlmEngine engine = ModelLoader.LoadOffline(
                new EngineArgs
                {
                    Model = dir, Device = device, Dtype = "float32", MaxModelLen = 128, MaxNumSeqs = 16, MaxNumBatchedTokens = 64,
                    KvCacheMemoryBytes = 64L << 20, SpeculativeConfig = speculative, EnablePrefixCaching = false,
                },
                wrapExecutor: runner => recorder = new DraftRecorder(runner)).Engine;
            return (engine.Generate(requests).Select(Tokens).ToList(), recorder!);
        }

        (List<List<int>> plain, _) = Run("cuda", null);
        (List<List<int>> gpu, DraftRecorder gpuDrafts) = Run("cuda", spec);
        (_, DraftRecorder cpuDrafts) = Run("cpu", spec);

        Assert.Equal(plain, gpu);
        int same = gpuDrafts.Drafts.Count(d => cpuDrafts.Drafts.TryGetValue(d.Key, out int[]? other) && other.SequenceEqual(d.Value));
        TestContext.Current.SendDiagnosticMessage($"{kind}: {same} of {gpuDrafts.Drafts.Count} GPU draft lists equal the CPU's ({cpuDrafts.Drafts.Count} on the CPU)");
        Assert.True(gpuDrafts.Drafts.Count > 20, $"only {gpuDrafts.Drafts.Count} drafts were proposed");
        // fp32 on both, summed in other orders: a near-tie may come out otherwise, a wrong row or position would not.
        Assert.True(same >= 0.9 * gpuDrafts.Drafts.Count, $"{same} of {gpuDrafts.Drafts.Count} GPU draft lists equal the CPU's");
    }

    [Fact]
    public void A_decode_bucket_larger_than_any_eager_step_is_recorded()
    {
        Gpu.Require();
        // The only eager step has 2 rows; nine one-token prompts then form a plain decode step padded to the 16
        // bucket, recorded with no larger step before it (so nothing it needs may still have to grow).
        string dir = Path.Combine(RepoPaths.FixtureModels, "qwen3-headdim-qknorm-bf16");
        var first = new GenerateRequest("first", [11, 12], new SamplingParams { Temperature = 0, MaxTokens = 2, IgnoreEos = true });
        var burst = Enumerable.Range(0, 9).Select(i => new GenerateRequest(
            $"b{i}", [100 + i], new SamplingParams { Temperature = 0, MaxTokens = 3, IgnoreEos = true })).ToList();

        List<List<int>> eager;
        using (LlmEngine engine = Engine(dir, enforceEager: true))
        {
            engine.Generate([first]);
            eager = engine.Generate(burst).Select(Tokens).ToList();
        }

        using LlmEngine graphed = Engine(dir);
        graphed.Generate([first]);
        List<List<int>> replayed = graphed.Generate(burst).Select(Tokens).ToList();
        Assert.Equal(eager, replayed);
    }

    [Fact]
    public void Decode_replayed_from_cuda_graphs_equals_eager_decode()
    {
        Gpu.Require();
        string dir = Path.Combine(RepoPaths.FixtureModels, "llama3-rope-tied-f32");
        // 11 sequences decode in the 16 bucket (5 padding rows); as they finish, smaller buckets are recorded too.
        var requests = Enumerable.Range(0, 11).Select(i => new GenerateRequest(
            $"r{i}", Enumerable.Range(0, 3 + i).Select(t => (t * 31 + i * 7) % 512).ToList(),
            new SamplingParams { Temperature = 0, MaxTokens = 4 + 2 * i, IgnoreEos = true, Logprobs = 1 })).ToList();

        IReadOnlyList<RequestOutput> eager, graphed;
        using (LlmEngine engine = Engine(dir, enforceEager: true))
        {
            eager = engine.Generate(requests);
        }

        using (LlmEngine engine = Engine(dir))
        {
            graphed = engine.Generate(requests);
        }

        for (int i = 0; i < requests.Count; i++)
        {
            Assert.Equal(Tokens(eager[i]), Tokens(graphed[i]));
            float[] a = eager[i].Outputs.SelectMany(o => o.LogprobsDelta!).Select(p => p.Chosen.Logprob).ToArray();
            float[] b = graphed[i].Outputs.SelectMany(o => o.LogprobsDelta!).Select(p => p.Chosen.Logprob).ToArray();
            // The same kernels; only cuBLAS's choice of algorithm for a padded row count may reorder sums.
            Assert.True(a.Zip(b, (x, y) => Math.Abs(x - y)).Max() < 1e-3f, $"request {i}: logprobs differ");
        }
    }
}
