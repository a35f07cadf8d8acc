using Celer.Models.Quantization;
using Celer.Engine.Execution;
using Celer.Models.Config;
using Celer.Engine.Tests.Support;
using Celer.TestSupport;
using Xunit;

namespace Celer.Engine.Tests.Execution;

/// <summary>
/// The whole engine (scheduler, KV cache manager, CPU model runner, sampler, output processing) on real
/// transformers-made checkpoints: greedy output equals transformers', and the batching invariant — any request's
/// output is the same whether it runs alone or among others, through chunked prefill, prefix-cache hits and
/// preemption.
/// </summary>
public sealed class CpuModelEngineTests
{
    private static string FixtureModel(string name) => Path.Combine(RepoPaths.FixtureModels, name);

    /// <param name="asyncScheduling">Each step scheduled before the previous one's tokens are back (on the CPU it only delays outputs).</param>
    private static LlmEngine Engine(
        string model, int? maxNumBatchedTokens = null, int maxNumSeqs = 16, int? kvBlocks = null, int maxModelLen = 128, bool asyncScheduling = false)
    {
        ModelConfig config = ModelConfig.Load(model);
        // KV bytes of one 16-token block on the CPU backend: keys and values, fp32, every layer.
        long blockBytes = 2L * config.NumHiddenLayers * 16 * config.NumKeyValueHeads * config.HeadDim * sizeof(float);
        var args = new EngineArgs
        {
            Model = model,
            MaxModelLen = maxModelLen,
            MaxNumSeqs = maxNumSeqs,
            MaxNumBatchedTokens = maxNumBatchedTokens,
            KvCacheMemoryBytes = kvBlocks is int blocks ? blocks * blockBytes : null,
            Seed = 1,
            AsyncScheduling = asyncScheduling,
            // --quantization naming the checkpoint's own method serves it as leaving the flag out does (FP8 fixtures).
            Quantization = config.Quantization?.Method,
        };
        return ModelLoader.LoadOffline(args).Engine;
    }

    private static SamplingParams Greedy(int maxTokens, int? logprobs = null) =>
        new() { Temperature = 0, MaxTokens = maxTokens, IgnoreEos = true, Logprobs = logprobs };

    private static List<int> Tokens(RequestOutput output) => output.Outputs.SelectMany(o => o.TokenIdsDelta).ToList();

    /// <summary>The fixture's prompts through the engine: greedy, top-5 logprobs, as many tokens as transformers made.</summary>
    private static IReadOnlyList<RequestOutput> Generate(LlmEngine engine, ReferenceFixture fixture) =>
        engine.Generate([.. fixture.Cases.Select((c, i) => new GenerateRequest($"r{i}", c.PromptTokenIds, Greedy(c.OutputTokenIds.Count, logprobs: 5)))]);

    /// <summary>
    /// <see cref="Generate"/>, every case compared with transformers by vLLM's criterion within <paramref name="tolerance"/>;
    /// the tokens identical before the first divergences, over all cases.
    /// </summary>
    private static int MatchedTokens(LlmEngine engine, string name, ReferenceFixture fixture, float tolerance)
    {
        IReadOnlyList<RequestOutput> outputs = Generate(engine, fixture);
        int matched = 0;
        for (int i = 0; i < fixture.Cases.Count; i++)
        {
            List<GeneratedPosition> positions = GeneratedPositions.Of(outputs[i]);
            Assert.Equal(fixture.Cases[i].OutputTokenIds.Count, positions.Count);
            matched += LogprobsComparison.AssertClose($"{name} case {i}", fixture.Cases[i].OutputLogprobs, positions, tolerance);
        }

        return matched;
    }

    // A bf16 or FP8 KV cache on the CPU. FP8: vLLM's criterion on tokens alone, as for the GPU's (FP8 keys and values
    // move these random tiny models' logprobs by up to ~1, so no bound on them; a broken cache diverges at once outside
    // the top-5). bf16: the bound of the bf16 models (EngineOnGpuTests). The budget is two max-length sequences at the
    // cache's bytes per value, which fp32-sized blocks would not fit (the load would refuse it), and it makes requests
    // preempt one another. E5M2 (two mantissa bits) is checked on mistral only: on llama-gqa and qwen2-bias it diverges
    // outside the top-5 (case 2 step 1, case 3 step 2) while E4M3 follows transformers on all three, and the kernels
    // match their reference exactly over decoded values (PagedAttentionTests).
    [Theory]
    [InlineData("llama-gqa-bf16-v4config", "fp8_e4m3", 1, float.PositiveInfinity)]
    [InlineData("qwen2-bias-yarn-bf16", "fp8", 1, float.PositiveInfinity)]
    [InlineData("mistral-sliding-window-f16", "fp8_e4m3", 1, float.PositiveInfinity)]
    [InlineData("mistral-sliding-window-f16", "fp8_e5m2", 1, float.PositiveInfinity)]
    [InlineData("llama-gqa-bf16-v4config", "bfloat16", 2, 0.35f)]
    [InlineData("qwen2-bias-yarn-bf16", "bfloat16", 2, 0.35f)]
    public void Greedy_output_over_a_narrow_kv_cache_follows_transformers(string name, string kvCacheDtype, int bytesPerValue, float tolerance)
    {
        ModelConfig config = ModelConfig.Load(FixtureModel(name));
        long blockBytes = 2L * config.NumHiddenLayers * 16 * config.NumKeyValueHeads * config.HeadDim * bytesPerValue;
        ReferenceFixture fixture = ReferenceFixture.Load(Path.Combine(FixtureModel(name), "reference.json"));
        using LlmEngine engine = ModelLoader.LoadOffline(new EngineArgs
        {
            Model = FixtureModel(name),
            MaxModelLen = 128,
            MaxNumSeqs = 16,
            MaxNumBatchedTokens = 32,
            KvCacheDtype = kvCacheDtype,
            KvCacheMemoryBytes = 2 * 9 * blockBytes,
        }).Engine;

        int matched = MatchedTokens(engine, name, fixture, tolerance);

        Assert.True(matched >= fixture.Cases.Count, $"{name}: only {matched} tokens identical before the first divergences");
    }

    /// <summary>
    /// FP8 checkpoints through the whole loader (config, dequantizing weight source, fp32 weights, W8A8 inputs) and the
    /// engine, by the criterion of ReferenceParityTests' FP8 fixtures (tokens: FP8 inputs round differently where fp32
    /// summation order differs).
    /// </summary>
    [Theory]
    [InlineData("llama-fp8-channel-dynamic")]
    [InlineData("llama-fp8-tensor-static")]
    [InlineData("llama-fp8-block-dynamic")]
    [InlineData("llama-fp8-block128-dynamic")]
    public void Fp8_checkpoints_run_on_the_cpu(string name)
    {
        ReferenceFixture fixture = ReferenceFixture.Load(Path.Combine(FixtureModel(name), "reference.json"));
        using LlmEngine engine = Engine(FixtureModel(name), maxNumBatchedTokens: 32);

        int matched = MatchedTokens(engine, name, fixture, float.PositiveInfinity);

        Assert.True(matched >= fixture.Cases.Sum(c => c.OutputTokenIds.Count) / 2, $"{name}: only {matched} tokens identical before the first divergences");
    }

    /// <summary>
    /// Integer weight-only checkpoints (GPTQ, AWQ, compressed-tensors W4A16 / W8A16) through the whole loader and the
    /// engine: the weights are the reference's dequantized ones exactly and the inputs are not quantized, so every token
    /// matches and logprobs stay within fp32 noise (ReferenceParityTests' bound), including GPTQ's quantized lm_head and
    /// the routed experts of 4-bit MoE checkpoints (LoadExperts' default: dequantized at load).
    /// </summary>
    [Theory]
    [InlineData("qwen3-moe-gptq-int4-g32")]
    [InlineData("qwen3-moe-w4a16-channel-i96")]
    [InlineData("llama-gptq-int4-g16-actorder")]
    [InlineData("llama-gptq-int8-channel-lmhead")]
    [InlineData("llama-awq-int4-g16")]
    [InlineData("llama-w4a16-g16-asym-actorder")]
    [InlineData("llama-w8a16-channel")]
    public void Integer_weight_only_checkpoints_run_on_the_cpu(string name)
    {
        ReferenceFixture fixture = ReferenceFixture.Load(Path.Combine(FixtureModel(name), "reference.json"));
        using LlmEngine engine = Engine(FixtureModel(name), maxNumBatchedTokens: 32);

        int matched = MatchedTokens(engine, name, fixture, 2e-3f);

        Assert.Equal(fixture.Cases.Sum(c => c.OutputTokenIds.Count), matched);
    }

    /// <summary>
    /// <c>celer quantize</c>'s checkpoints of a bf16 fixture served through the whole loader. Its FP8 copy is exactly
    /// what <c>--quantization ptpc_fp8</c> serves from the original (the same per-row absmax / 448 scales, inputs dynamic
    /// per token): the same tokens and logprobs, bit for bit. The integer copies load and generate every requested
    /// token; their weights are checked element by element in CheckpointQuantizerTests (these random tiny models move
    /// past their reference's top-5 under 4- and even 8-bit rounding, so the reference says nothing about them).
    /// </summary>
    [Theory]
    [InlineData("fp8")]
    [InlineData("int8")]
    [InlineData("gptq-rtn")]
    [InlineData("awq-rtn")]
    public void Quantized_copies_are_served(string method)
    {
        const string name = "llama-gqa-bf16-v4config";
        string output = Path.Combine(Path.GetTempPath(), $"celer-quantize-{method}-{Environment.ProcessId}");
        try
        {
            CheckpointQuantizer.Run(FixtureModel(name), output, CheckpointQuantizer.ParseMethod(method), groupSize: 16);
            ReferenceFixture fixture = ReferenceFixture.Load(Path.Combine(FixtureModel(name), "reference.json"));
            using LlmEngine copy = Engine(output);
            IReadOnlyList<RequestOutput> actual = Generate(copy, fixture);
            if (method == "fp8")
            {
                using LlmEngine online = ModelLoader.LoadOffline(new EngineArgs { Model = FixtureModel(name), Quantization = "ptpc_fp8", MaxModelLen = 128, Seed = 1 }).Engine;
                IReadOnlyList<RequestOutput> expected = Generate(online, fixture);
                for (int i = 0; i < fixture.Cases.Count; i++)
                {
                    Assert.Equal(Tokens(expected[i]), Tokens(actual[i]));
                    Assert.Equal(GeneratedPositions.Of(expected[i]).Select(p => p.Logprob), GeneratedPositions.Of(actual[i]).Select(p => p.Logprob));
                }
            }

            for (int i = 0; i < fixture.Cases.Count; i++)
            {
                Assert.Equal(fixture.Cases[i].OutputTokenIds.Count, Tokens(actual[i]).Count);
                Assert.All(GeneratedPositions.Of(actual[i]), p => Assert.True(float.IsFinite(p.Logprob)));
            }
        }
        finally
        {
            Directory.Delete(output, recursive: true);
        }
    }

    /// <summary>
    /// <c>--quantization fp8|ptpc_fp8</c> on a bf16 checkpoint serves exactly the model that checkpoint would be stored as
    /// compressed-tensors FP8 (per-tensor or per-channel <c>weight_scale</c>, inputs dynamic per token), written here from
    /// the quantized weights: the same tokens and logprobs, bit for bit.
    /// </summary>
    [Theory]
    [InlineData("fp8", "tensor", "llama-gqa-bf16-v4config")]
    [InlineData("ptpc_fp8", "channel", "llama-gqa-bf16-v4config")]
    [InlineData("ptpc_fp8", "channel", "qwen3-moe-bf16")]   // FP8 routed experts (their inputs unquantized), a bf16 router
    public void Online_fp8_quantization_serves_what_the_quantized_checkpoint_would(string method, string strategy, string name)
    {
        string stored = Path.Combine(Path.GetTempPath(), $"celer-online-{method}-{Environment.ProcessId}");
        Directory.CreateDirectory(stored);
        try
        {
            WriteQuantizedCheckpoint(FixtureModel(name), stored, method, strategy);
            ReferenceFixture fixture = ReferenceFixture.Load(Path.Combine(FixtureModel(name), "reference.json"));
            using LlmEngine online = ModelLoader.LoadOffline(new EngineArgs { Model = FixtureModel(name), Quantization = method, MaxModelLen = 128, Seed = 1 }).Engine;
            using LlmEngine checkpoint = Engine(stored);

            IReadOnlyList<RequestOutput> expected = Generate(checkpoint, fixture), actual = Generate(online, fixture);

            for (int i = 0; i < fixture.Cases.Count; i++)
            {
                Assert.Equal(Tokens(expected[i]), Tokens(actual[i]));
                Assert.Equal(GeneratedPositions.Of(expected[i]).Select(p => p.Logprob), GeneratedPositions.Of(actual[i]).Select(p => p.Logprob));
            }
        }
        finally
        {
            Directory.Delete(stored, recursive: true);
        }
    }

    /// <summary>
    /// Dummy weights quantized at load (<c>--load-format dummy -q fp8</c>, the way to benchmark FP8 without a checkpoint)
    /// on a MoE model, whose router stays bf16 while its attention and shared expert run W8A8 and its routed experts FP8
    /// weights on bf16 inputs.
    /// </summary>
    [Fact]
    public void Dummy_weights_can_be_quantized_at_load()
    {
        using LlmEngine engine = ModelLoader.LoadOffline(new EngineArgs
        {
            Model = FixtureModel("qwen2-moe-shared-expert-bf16"), LoadFormat = "dummy", Quantization = "fp8", MaxModelLen = 64,
        }).Engine;

        RequestOutput output = engine.Generate([new GenerateRequest("r", [1, 2, 3, 4, 5], Greedy(8, logprobs: 1))]).Single();

        Assert.Equal(8, Tokens(output).Count);
        Assert.All(GeneratedPositions.Of(output), p => Assert.True(float.IsFinite(p.Logprob)));
    }

    /// <summary>
    /// gpt-oss with dummy weights (how its shape is benchmarked): a dummy source holds every name, MXFP4 blocks included,
    /// so the experts' format must come from the config, which has no quantization_config here.
    /// </summary>
    [Fact]
    public void Dummy_weights_load_gpt_oss()
    {
        using LlmEngine engine = ModelLoader.LoadOffline(new EngineArgs
        {
            Model = FixtureModel("gpt-oss-sinks-moe-bf16"), LoadFormat = "dummy", MaxModelLen = 64,
        }).Engine;

        RequestOutput output = engine.Generate([new GenerateRequest("r", [1, 2, 3, 4, 5], Greedy(8, logprobs: 1))]).Single();

        Assert.Equal(8, Tokens(output).Count);
        Assert.All(GeneratedPositions.Of(output), p => Assert.True(float.IsFinite(p.Logprob)));
    }

    /// <summary>The checkpoint with its projections as <see cref="Models.Quantization.OnlineFp8Source"/> quantizes them.</summary>
    private static void WriteQuantizedCheckpoint(string source, string destination, string method, string strategy)
    {
        var scales = strategy == "tensor" ? Models.Quantization.Fp8WeightScales.PerTensor : Models.Quantization.Fp8WeightScales.PerChannel;
        using var original = Models.Weights.SafetensorsWeightSource.Open(source);
        string[] names = [.. original.Names];
#pragma warning disable CA2000 // the online source disposes the one it wraps
        using var online = new Models.Quantization.OnlineFp8Source(Models.Weights.SafetensorsWeightSource.Open(source), scales);
#pragma warning restore CA2000
        var tensors = new List<(string, Models.Weights.DType, int[], byte[])>();
        foreach (string tensor in names)
        {
            Models.Weights.WeightTensor t = online.Get(tensor);
            tensors.Add((tensor, t.DType, t.Shape, t.Bytes.ToArray()));
            string scale = tensor[..^".weight".Length] + ".weight_scale";
            if (t.DType == Models.Weights.DType.F8E4M3)
            {
                Models.Weights.WeightTensor s = online.Get(scale);
                tensors.Add((scale, s.DType, s.Shape, s.Bytes.ToArray()));
            }
        }

        Models.Weights.SafetensorsWriter.Write(Path.Combine(destination, "model.safetensors"), tensors);
        var config = System.Text.Json.Nodes.JsonNode.Parse(File.ReadAllText(Path.Combine(source, "config.json")))!.AsObject();
        config["quantization_config"] = System.Text.Json.Nodes.JsonNode.Parse("""
            {"quant_method": "compressed-tensors", "format": "float-quantized",
             "config_groups": {"group_0": {"targets": ["Linear"],
               "weights": {"num_bits": 8, "type": "float", "strategy": "STRATEGY", "symmetric": true, "dynamic": false},
               "input_activations": {"num_bits": 8, "type": "float", "strategy": "token", "symmetric": true, "dynamic": true}}},
             "ignore": ["lm_head"]}
            """.Replace("STRATEGY", strategy, StringComparison.Ordinal));
        File.WriteAllText(Path.Combine(destination, "config.json"), config.ToJsonString());
        File.Copy(Path.Combine(source, "generation_config.json"), Path.Combine(destination, "generation_config.json"));
    }

    /// <summary>The loader checks <c>--quantization</c> against the checkpoint before anything else is read.</summary>
    [Fact]
    public void A_quantization_flag_that_contradicts_the_checkpoint_is_refused()
    {
        var refused = Assert.Throws<Models.Weights.ModelLoadException>(() =>
            ModelLoader.LoadOffline(new EngineArgs { Model = FixtureModel("llama-fp8-channel-dynamic"), Quantization = "fp8" }));

        Assert.Contains("does not match", refused.Message, StringComparison.Ordinal);
        Assert.Contains("compressed-tensors", refused.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void An_fp8_checkpoint_cublaslt_cannot_scale_is_refused_on_cuda()
    {
        var refused = Assert.Throws<Models.Weights.ModelLoadException>(() => ModelLoader.LoadOffline(new EngineArgs { Model = FixtureModel("llama-fp8-block-dynamic"), Device = "cuda" }));

        Assert.Contains("32x32 weight blocks and DynamicPerTokenGroup inputs in groups of 32", refused.Message, StringComparison.Ordinal);
        Assert.Contains("--device cpu", refused.Message, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("llama-gqa-bf16-v4config")]
    [InlineData("qwen2-bias-yarn-bf16")]
    [InlineData("mistral-sliding-window-f16")]
    public void Greedy_output_through_the_engine_matches_transformers(string name)
    {
        ReferenceFixture fixture = ReferenceFixture.Load(Path.Combine(FixtureModel(name), "reference.json"));
        using LlmEngine engine = Engine(FixtureModel(name), maxNumBatchedTokens: 32);

        IReadOnlyList<RequestOutput> outputs = Generate(engine, fixture);

        for (int i = 0; i < fixture.Cases.Count; i++)
        {
            List<GeneratedPosition> positions = GeneratedPositions.Of(outputs[i]);
            int matched = LogprobsComparison.AssertClose($"{name} case {i}", fixture.Cases[i].OutputLogprobs, positions, 2e-3f);
            Assert.Equal(fixture.Cases[i].OutputTokenIds.Count, matched);
            Assert.Equal(fixture.Cases[i].OutputTokenIds, Tokens(outputs[i]));
        }
    }

    [Theory]
    [InlineData("qwen3-headdim-qknorm-bf16", 11, false)]
    [InlineData("llama3-rope-tied-f32", 12, false)]
    [InlineData("qwen3-headdim-qknorm-bf16", 13, true)]
    public void Batched_greedy_output_equals_solo_output_under_chunking_prefix_hits_and_preemption(string name, int seed, bool asyncScheduling)
    {
        string model = FixtureModel(name);
        int vocab = ModelConfig.Load(model).VocabSize;
        var random = new Random(seed);
        int[] sharedPrefix = Enumerable.Range(0, 40).Select(_ => random.Next(vocab)).ToArray();
        var requests = new List<GenerateRequest>();
        for (int i = 0; i < 20; i++)
        {
            IEnumerable<int> prompt = Enumerable.Range(0, random.Next(1, 50)).Select(_ => random.Next(vocab));
            if (i % 3 == 0)
            {
                // A third of the prompts share a 40-token prefix: 2 full blocks to hit in the prefix cache.
                prompt = sharedPrefix.Concat(prompt);
            }

            requests.Add(new GenerateRequest($"r{i}", prompt.ToList(), Greedy(random.Next(1, 24))));
        }

        var solo = new List<List<int>>();
        using (LlmEngine alone = Engine(model))
        {
            foreach (GenerateRequest r in requests)
            {
                solo.Add(Tokens(alone.Generate([r])[0]));
            }
        }

        // A 16-token budget forces chunked prefill; 14 blocks of 16 tokens for up to 6 sequences of up to 113 tokens
        // force preemption; the shared prefixes hit the cache.
        using LlmEngine batched = Engine(model, maxNumBatchedTokens: 16, maxNumSeqs: 6, kvBlocks: 14, asyncScheduling: asyncScheduling);
        Assert.Equal(asyncScheduling, batched.Scheduler.Config.AsyncScheduling);
        IReadOnlyList<RequestOutput> outputs = batched.Generate(requests);

        for (int i = 0; i < requests.Count; i++)
        {
            Assert.True(solo[i].SequenceEqual(Tokens(outputs[i])), $"request {i}: batched output differs from its solo output");
        }

        EngineStats stats = batched.Stats;
        Assert.True(stats.NumPreemptions > 0, "the workload was meant to force preemption");
        Assert.True(stats.PrefixCacheHits > 0, "the workload was meant to hit the prefix cache");
        Assert.Equal(0, stats.NumRunning + stats.NumWaiting);
        Assert.Equal(0f, stats.KvCacheUsage);
    }

    [Theory]
    [InlineData("llama-gqa-bf16-v4config")]
    [InlineData("qwen3-headdim-qknorm-bf16")]
    public void Prompt_logprobs_through_chunked_prefill_and_preemption_match_transformers(string name)
    {
        ReferenceFixture fixture = ReferenceFixture.Load(Path.Combine(FixtureModel(name), "reference.json"));
        // A 7-token budget splits every prompt into chunks that start at odd positions; 4 blocks for 3 sequences force
        // preemption, so some prompts are recomputed (and their prompt logprobs sent again) after a resume.
        using LlmEngine engine = Engine(FixtureModel(name), maxNumBatchedTokens: 7, maxNumSeqs: 3, kvBlocks: 6, maxModelLen: 64);
        var requests = fixture.Cases
            .Select((c, i) => new GenerateRequest($"r{i}", c.PromptTokenIds, Greedy(c.OutputTokenIds.Count) with { PromptLogprobs = 5 }))
            .ToList();

        IReadOnlyList<RequestOutput> outputs = engine.Generate(requests);

        for (int i = 0; i < fixture.Cases.Count; i++)
        {
            ReferenceCase c = fixture.Cases[i];
            IReadOnlyList<PositionLogprobs?> actual = outputs[i].PromptLogprobs!;
            Assert.Equal(c.PromptTokenIds.Count, actual.Count);
            Assert.Null(actual[0]);
            for (int p = 1; p < c.PromptTokenIds.Count; p++)
            {
                ReferenceLogprobs expected = c.PromptLogprobs[p]!;
                PositionLogprobs position = actual[p]!;
                Assert.Equal(c.PromptTokenIds[p], position.Chosen.TokenId);
                Assert.True(
                    Math.Abs(expected.Logprob - position.Chosen.Logprob) <= 2e-3f,
                    $"{name} case {i} prompt position {p}: logprob {position.Chosen.Logprob} vs transformers {expected.Logprob}");
                Assert.Equal(expected.Top[0].TokenId, position.Top[0].TokenId);
            }

            Assert.Equal(c.OutputTokenIds, Tokens(outputs[i]));
        }

        Assert.True(engine.Stats.NumPreemptions > 0, "the workload was meant to force preemption");
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void Seeded_sampling_gives_the_same_tokens_alone_and_batched(bool asyncScheduling)
    {
        string model = FixtureModel("llama-mha-dynamic-bf16");
        var sampling = new SamplingParams { Temperature = 0.8f, TopP = 0.95f, Seed = 1234, MaxTokens = 16, IgnoreEos = true };
        var target = new GenerateRequest("target", [5, 17, 42, 99, 3], sampling);
        var others = Enumerable.Range(0, 5).Select(i => new GenerateRequest($"o{i}", [7 + i, 8, 9], new SamplingParams { Temperature = 1f, MaxTokens = 10 + i, IgnoreEos = true })).ToList();

        List<int> alone;
        using (LlmEngine engine = Engine(model))
        {
            alone = Tokens(engine.Generate([target])[0]);
        }

        // Alone without async scheduling, batched with it when asked: the seeded stream must not depend on either.
        using LlmEngine batchedEngine = Engine(model, maxNumBatchedTokens: 8, maxNumSeqs: 8, asyncScheduling: asyncScheduling);
        List<int> batched = Tokens(batchedEngine.Generate([.. others.Take(2), target, .. others.Skip(2)])[2]);
        Assert.Equal(16, alone.Count);
        Assert.Equal(alone, batched);
    }

    [Fact]
    public void A_llama_clone_under_another_name_is_refused_clearly_and_runs_with_hf_overrides()
    {
        string source = FixtureModel("llama-gqa-bf16-v4config");
        DirectoryInfo clone = Directory.CreateTempSubdirectory("celer-clone-");
        try
        {
            foreach (string file in Directory.EnumerateFiles(source))
            {
                File.Copy(file, Path.Combine(clone.FullName, Path.GetFileName(file)));
            }

            string configPath = Path.Combine(clone.FullName, "config.json");
            File.WriteAllText(configPath, File.ReadAllText(configPath).Replace("\"LlamaForCausalLM\"", "\"AcmeForCausalLM\"", StringComparison.Ordinal));
            var refused = Assert.Throws<Models.Config.ModelConfigException>(() => ModelLoader.LoadOffline(new EngineArgs { Model = clone.FullName }));
            Assert.Contains("'AcmeForCausalLM' is not supported", refused.Message, StringComparison.Ordinal);
            Assert.Contains("LlamaForCausalLM", refused.Message, StringComparison.Ordinal);
            Assert.Contains("--hf-overrides", refused.Message, StringComparison.Ordinal);

            ReferenceFixture fixture = ReferenceFixture.Load(Path.Combine(source, "reference.json"));
            ReferenceCase c = fixture.Cases[^1];
            using LlmEngine engine = ModelLoader.LoadOffline(new EngineArgs
            {
                Model = clone.FullName,
                MaxModelLen = 128,
                HfOverrides = "{\"architectures\": [\"LlamaForCausalLM\"]}",
            }).Engine;
            Assert.Equal(c.OutputTokenIds, Tokens(engine.Generate([new GenerateRequest("clone", c.PromptTokenIds, Greedy(c.OutputTokenIds.Count))])[0]));
        }
        finally
        {
            clone.Delete(recursive: true);
        }
    }

    [Fact]
    public void A_shared_prefix_is_computed_once()
    {
        string model = FixtureModel("llama-gqa-bf16-v4config");
        using LlmEngine engine = Engine(model);
        int[] prefix = Enumerable.Range(0, 48).Select(i => (i * 37 + 11) % 500).ToArray();

        engine.Generate([new GenerateRequest("first", [.. prefix, 1, 2, 3], Greedy(4))]);
        long hitsBefore = engine.Stats.PrefixCacheHits;
        long promptTokensBefore = engine.Stats.PromptTokens;
        RequestOutput second = engine.Generate([new GenerateRequest("second", [.. prefix, 9, 8, 7, 6], Greedy(4))])[0];

        // 48 shared tokens = 3 full blocks of 16; the differing suffix is computed.
        Assert.Equal(48, second.NumCachedTokens);
        Assert.Equal(48, engine.Stats.PrefixCacheHits - hitsBefore);
        Assert.Equal(52, engine.Stats.PromptTokens - promptTokensBefore);
    }
}
