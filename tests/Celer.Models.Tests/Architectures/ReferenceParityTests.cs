using Celer.Backends.Cpu;
using Celer.Models.Architectures;
using Celer.Models.Config;
using Celer.Models.Quantization;
using Celer.Models.Weights;
using Celer.TestSupport;
using Xunit;

namespace Celer.Models.Tests.Architectures;

/// <summary>
/// The CPU forward pass against Hugging Face transformers (fp32, tools/reference/make_model_fixtures.py) on every
/// fixture model: greedy tokens and logprobs compared as vLLM compares them, prompt logprobs too, and a batched
/// forward equal to one sequence at a time.
/// </summary>
public sealed class ReferenceParityTests
{
    // Both sides compute in fp32 from the same stored weights; only summation order differs (SIMD, blocking), which
    // moves logprobs by ~1e-5. 2e-3 leaves room for long reductions while a real bug (a missing bias, a wrong RoPE
    // frequency, an off-by-one window) moves them by 1e-1 or more.
    private const float Tolerance = 2e-3f;

    // FP8 W8A8 fixtures quantize every linear layer's input: where fp32 summation order leaves a value on the other side
    // of an E4M3 rounding boundary than transformers did, it moves by a whole FP8 step (1/8 relative). With dynamic
    // scales that happens a few times per long sequence and moves these tiny random models' logprobs by up to ~0.8 from
    // there on (measured on the 40-token case; the static-scale fixture stays within 2e-3). So, as vLLM compares
    // quantized models (and as CpuModelEngineTests compares FP8 KV caches): tokens only, a divergence allowed where each
    // side's token is in the other's top 5, and most tokens identical before it. A wrong scale or layout diverges at once;
    // the dequantization and the input quantization are checked exactly in Fp8CheckpointTests and Fp8ActivationsTests.
    private const float QuantizedTolerance = float.PositiveInfinity;

    private const int BlockSize = 16;

    public static TheoryData<string> Models() => new(RepoPaths.FixtureModelNames().Append("celer-tiny-py"));

    [Theory]
    [MemberData(nameof(Models))]
    public void Greedy_tokens_and_logprobs_match_transformers(string name)
    {
        (string dir, ReferenceFixture fixture) = Load(name);
        // Weight-only formats (integer codes, FP8 experts) compute with exactly the dequantized weights transformers has:
        // held to Tolerance.
        bool quantized = Fp8Fixtures.RoundsInputs(dir);
        (CpuBackend backend, IWeightSource weights) = Open(dir);
        using var ownedBackend = backend;
        using var ownedWeights = weights;
        (DecoderModel model, PagedSequenceRunner runner) = Build(dir, weights, backend, fixture.Cases.Count);

        foreach ((ReferenceCase c, int index) in fixture.Cases.Select((c, i) => (c, i)))
        {
            var tokens = new List<int>(c.PromptTokenIds);
            var generated = new List<GeneratedPosition>();
            int computed = 0;
            while (generated.Count < c.OutputTokenIds.Count)
            {
                float[][] logits = runner.Step([(0, tokens, computed)]);
                if (computed == 0)
                {
                    AssertPromptLogprobs($"{name} case {index}", c, logits, quantized ? QuantizedTolerance : Tolerance);
                }

                computed = tokens.Count;
                float[] last = logits[^1];
                int next = PagedSequenceRunner.ArgMax(last);
                generated.Add(PagedSequenceRunner.Position(last, next, 5));
                tokens.Add(next);
            }

            int matched = LogprobsComparison.AssertClose($"{name} case {index}", c.OutputLogprobs, generated, quantized ? QuantizedTolerance : Tolerance);

            // The fixtures were made with a top-1/top-2 margin of at least 3e-3 at every step, far above fp32
            // reordering noise, so with both sides in fp32 nothing may diverge at all (FP8 inputs aside, above).
            Assert.True(matched >= (quantized ? c.OutputTokenIds.Count / 2 : c.OutputTokenIds.Count), $"{name} case {index}: {matched} tokens identical before the first divergence");
        }

        GC.KeepAlive(model);
    }

    [Theory]
    [MemberData(nameof(Models))]
    public void Batched_forward_equals_one_sequence_at_a_time(string name)
    {
        (string dir, ReferenceFixture fixture) = Load(name);
        // Batched and solo matmuls sum in different orders; with FP8 inputs that can move a value across a rounding
        // boundary (see QuantizedTolerance), so these fixtures are compared with transformers only.
        Assert.SkipWhen(Fp8Fixtures.RoundsInputs(dir), $"{name} quantizes its layers' inputs to FP8: batched and solo rows may round differently");
        (CpuBackend backend, IWeightSource weights) = Open(dir);
        using var ownedBackend = backend;
        using var ownedWeights = weights;
        (_, PagedSequenceRunner runner) = Build(dir, weights, backend, fixture.Cases.Count);

        // Prompt plus the reference continuation, fed as: a prefill of all prompts together, then 8 decode steps together.
        var sequences = fixture.Cases.Select(c => c.PromptTokenIds.Concat(c.OutputTokenIds.Take(8)).ToList()).ToList();
        var solo = new List<float[][]>();
        for (int s = 0; s < sequences.Count; s++)
        {
            var rows = new List<float[]>();
            int promptLen = fixture.Cases[s].PromptTokenIds.Count;
            rows.AddRange(runner.Step([(s, sequences[s].Take(promptLen).ToList(), 0)]));
            for (int len = promptLen + 1; len <= sequences[s].Count; len++)
            {
                rows.AddRange(runner.Step([(s, sequences[s].Take(len).ToList(), len - 1)]));
            }

            solo.Add([.. rows]);
        }

        var batched = sequences.Select(_ => new List<float[]>()).ToList();
        float[][] prefill = runner.Step(sequences.Select((seq, s) => (s, (IReadOnlyList<int>)seq.Take(fixture.Cases[s].PromptTokenIds.Count).ToList(), 0)).ToList());
        int row = 0;
        for (int s = 0; s < sequences.Count; s++)
        {
            for (int i = 0; i < fixture.Cases[s].PromptTokenIds.Count; i++)
            {
                batched[s].Add(prefill[row++]);
            }
        }

        for (int step = 1; step <= 8; step++)
        {
            float[][] decode = runner.Step(sequences.Select((seq, s) =>
            {
                int len = fixture.Cases[s].PromptTokenIds.Count + step;
                return (s, (IReadOnlyList<int>)seq.Take(len).ToList(), len - 1);
            }).ToList());
            for (int s = 0; s < sequences.Count; s++)
            {
                batched[s].Add(decode[s]);
            }
        }

        for (int s = 0; s < sequences.Count; s++)
        {
            Assert.Equal(solo[s].Length, batched[s].Count);
            for (int r = 0; r < solo[s].Length; r++)
            {
                // The same kernels on the same rows: only the matmul's row blocking can differ with the batch size.
                float maxDiff = solo[s][r].Zip(batched[s][r], (a, b) => Math.Abs(a - b)).Max();
                Assert.True(maxDiff < 1e-3f, $"{name}: sequence {s} row {r}: batched logits differ by {maxDiff}");
            }
        }
    }

    /// <summary>
    /// transformers 5 saves a MoE model's experts fused (<c>experts.gate_up_proj</c> [experts, 2·intermediate, hidden],
    /// <c>experts.down_proj</c> [experts, hidden, intermediate]); the Mixtral fixture rewritten that way gives the same logits.
    /// </summary>
    [Fact]
    public void Fused_experts_as_transformers_5_saves_them_give_the_same_logits()
    {
        (string dir, ReferenceFixture fixture) = Load("mixtral-moe-bf16");
        ModelConfig config = ModelConfig.Load(dir);
        int experts = config.Moe!.NumExperts;
        string fusedDir = Directory.CreateTempSubdirectory("celer-fused-moe").FullName;
        try
        {
            File.Copy(Path.Combine(dir, "config.json"), Path.Combine(fusedDir, "config.json"));
            using (var original = SafetensorsWeightSource.Open(dir))
            {
                var tensors = new List<(string, DType, int[], byte[])>();
                foreach (string name in original.Names.Where(n => !n.Contains(".experts.", StringComparison.Ordinal)).ToList())
                {
                    WeightTensor t = original.Get(name);
                    tensors.Add((name, t.DType, t.Shape, t.Bytes.ToArray()));
                }

                for (int layer = 0; layer < config.NumHiddenLayers; layer++)
                {
                    string p = $"model.layers.{layer}.block_sparse_moe.experts.";
                    byte[] Concat(Func<int, IEnumerable<string>> names) =>
                        [.. Enumerable.Range(0, experts).SelectMany(names).SelectMany(n => original.Get(p + n).Bytes.ToArray())];
                    WeightTensor w1 = original.Get(p + "0.w1.weight");
                    tensors.Add((p + "gate_up_proj", w1.DType, [experts, 2 * w1.Shape[0], w1.Shape[1]], Concat(e => [$"{e}.w1.weight", $"{e}.w3.weight"])));
                    tensors.Add((p + "down_proj", w1.DType, [experts, w1.Shape[1], w1.Shape[0]], Concat(e => [$"{e}.w2.weight"])));
                }

                SafetensorsWriter.Write(Path.Combine(fusedDir, "model.safetensors"), tensors);
            }

            float[][] Logits(string modelDir)
            {
                using var backend = new CpuBackend(DType.BF16);
                using var weights = SafetensorsWeightSource.Open(modelDir);
                (_, PagedSequenceRunner runner) = Build(modelDir, weights, backend, 1);
                return runner.Step([(0, fixture.Cases[0].PromptTokenIds, 0)]);
            }

            float[][] expected = Logits(dir), fused = Logits(fusedDir);
            Assert.Equal(expected.Length, fused.Length);
            for (int r = 0; r < expected.Length; r++)
            {
                Assert.Equal(expected[r], fused[r]);
            }
        }
        finally
        {
            Directory.Delete(fusedDir, recursive: true);
        }
    }

    /// <summary>
    /// gpt-oss's published checkpoints store the experts in MXFP4 ([experts, out, in / 32, 16] code blocks with E8M0
    /// scales, output-major), its bf16 ones input-major with gate and up interleaved. The fixture's experts packed into
    /// MXFP4 here (from the OCP definition: per 32 inputs the power of two that puts the largest at most at E2M1's 6, each
    /// value to the nearest code) give exactly the logits of a bf16 checkpoint of the values those codes stand for.
    /// </summary>
    [Fact]
    public void Gpt_oss_mxfp4_experts_give_the_logits_of_the_bf16_values_they_encode()
    {
        (string dir, ReferenceFixture fixture) = Load("gpt-oss-sinks-moe-bf16");
        string mxfp4Dir = Directory.CreateTempSubdirectory("celer-mxfp4").FullName, bf16Dir = Directory.CreateTempSubdirectory("celer-mxfp4-values").FullName;
        try
        {
            Mxfp4Packing.WriteGptOssCheckpoints(dir, mxfp4Dir, bf16Dir);

            float[][] Logits(string modelDir)
            {
                using var backend = new CpuBackend(DType.BF16);
                using var weights = SafetensorsWeightSource.Open(modelDir);
                // An MXFP4 checkpoint is read as stored: only gpt-oss's experts are quantized, and GptOssExperts decodes them.
                Assert.Same(weights, QuantizedWeights.Wrap(weights, ModelConfig.Load(modelDir).Quantization));
                (_, PagedSequenceRunner runner) = Build(modelDir, weights, backend, 1);
                return runner.Step([(0, fixture.Cases[3].PromptTokenIds, 0)]);
            }

            Assert.Equal("mxfp4", ModelConfig.Load(mxfp4Dir).Quantization!.Method);
            float[][] expected = Logits(bf16Dir), actual = Logits(mxfp4Dir);
            Assert.Equal(expected.Length, actual.Length);
            for (int r = 0; r < expected.Length; r++)
            {
                Assert.Equal(expected[r], actual[r]);
            }

            // The codes stand for other values than the fixture's weights: the logits moved, so the experts were read.
            Assert.NotEqual(Logits(dir)[^1], actual[^1]);
        }
        finally
        {
            Directory.Delete(mxfp4Dir, recursive: true);
            Directory.Delete(bf16Dir, recursive: true);
        }
    }

    private static void AssertPromptLogprobs(string label, ReferenceCase c, float[][] promptLogits, float tolerance)
    {
        for (int p = 1; p < c.PromptTokenIds.Count; p++)
        {
            ReferenceLogprobs expected = c.PromptLogprobs[p]!;
            GeneratedPosition actual = PagedSequenceRunner.Position(promptLogits[p - 1], c.PromptTokenIds[p], 5);
            Assert.Equal(expected.TokenId, actual.TokenId);
            Assert.True(
                Math.Abs(expected.Logprob - actual.Logprob) <= tolerance,
                $"{label}: prompt position {p}: logprob {actual.Logprob} vs transformers {expected.Logprob}");
        }
    }

    private static (string Dir, ReferenceFixture Fixture) Load(string name)
    {
        return name == "celer-tiny-py"
            ? (RepoPaths.DefaultModel, ReferenceFixture.Load(Path.Combine(RepoPaths.Fixtures, "celer-tiny-py", "reference.json")))
            : (Path.Combine(RepoPaths.FixtureModels, name), ReferenceFixture.Load(Path.Combine(RepoPaths.FixtureModels, name, "reference.json")));
    }

    /// <summary>
    /// The backend and weights a user's load gets: a quantized checkpoint's weights dequantized into fp32 (the CPU keeps
    /// them so), any other checkpoint's as stored.
    /// </summary>
#pragma warning disable CA2000 // returned to the caller, which disposes both
    private static (CpuBackend, IWeightSource) Open(string dir)
    {
        ModelConfig config = ModelConfig.Load(dir);
        var backend = new CpuBackend(config.Quantization is null ? config.TorchDtype ?? DType.BF16 : QuantizedWeights.DequantizedDType);
        return (backend, QuantizedWeights.Wrap(SafetensorsWeightSource.Open(dir), config.Quantization));
    }
#pragma warning restore CA2000

    private static (DecoderModel, PagedSequenceRunner) Build(string dir, IWeightSource weights, CpuBackend backend, int numSequences)
    {
        ModelConfig config = ModelConfig.Load(dir);
        const int maxBlocksPerSeq = 8;   // 128 tokens: the longest fixture sequence is 40 + 24
        var model = new DecoderModel(config, weights, backend, maxNumTokens: 256, maxLogitsRows: 64);
        backend.AllocateKvCache(config.NumHiddenLayers, 1 + numSequences * maxBlocksPerSeq, BlockSize, model.Attention);
        return (model, new PagedSequenceRunner(model, BlockSize, maxBlocksPerSeq));
    }
}
