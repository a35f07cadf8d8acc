using Celer.Backends.Cuda;
using Celer.Engine;
using Celer.Engine.Execution;
using Celer.Engine.Tests.Support;
using Celer.Models.Weights;
using Celer.TestSupport;

namespace Celer.Backends.Cuda.Tests;

/// <summary>
/// <c>--tensor-parallel-size 2</c> on two GPUs: rank 0 in this process, rank 1 a worker process on the second GPU, the
/// ranks meeting in NCCL all-reduces and all-gathers on their streams (inside the recorded decode graphs too). Every
/// fixture model the split takes gives transformers' greedy tokens: in fp32 all of them, with transformers' logprobs
/// (the sums of two halves round differently from one whole, well inside the tolerance); in bf16 by vLLM's criterion.
/// Skipped with fewer than two GPUs or without NCCL.
/// </summary>
public sealed class TensorParallelOnGpuTests
{
    private const float Fp32LogprobTolerance = 2e-3f, Bf16LogprobTolerance = 0.35f;

    public static TheoryData<string, string> Models() =>
        new(RepoPaths.FixtureModelNames().SelectMany(m => new[] { (m, "float32"), (m, "auto") }));

    private static void RequireTwoGpus()
    {
        Gpu.Require();
        Assert.SkipUnless(NcclCollectives.IsAvailable(), "NCCL (libnccl.so.2) was not found on this machine.");
        Assert.SkipUnless(CudaDevice.Count() >= 2, $"Tensor parallelism over two GPUs needs two; this machine has {CudaDevice.Count()}.");
    }

    [Theory]
    [MemberData(nameof(Models))]
    public void Two_gpus_give_transformers_greedy_tokens(string name, string dtype)
    {
        RequireTwoGpus();
        string dir = Path.Combine(RepoPaths.FixtureModels, name);
        var args = new EngineArgs
        {
            Model = dir,
            Device = "cuda",
            Dtype = dtype,
            MaxModelLen = 128,
            MaxNumSeqs = 16,
            MaxNumBatchedTokens = 32,
            KvCacheMemoryBytes = 64L << 20,
            TensorParallelSize = 2,
        };
        LlmEngine engine;
        try
        {
            engine = ModelLoader.LoadOffline(args).Engine;
        }
        catch (ModelLoadException refused) when (refused.Message.Contains("--tensor-parallel-size 2", StringComparison.Ordinal)
                                                  || refused.Message.Contains("tensor-parallel group of 2", StringComparison.Ordinal)
                                                  || refused.Message.Contains("tensor parallelism", StringComparison.Ordinal)
                                                  || refused.Message.Contains("weight blocks", StringComparison.Ordinal))
        {
            // What the split cannot take yet (mixtures of experts, quantized weights, OLMo-2) is refused by name, as is
            // what the GPU cannot run at all (FP8 blocks other than 128 × 128, EngineOnGpuTests).
            TestContext.Current.SendDiagnosticMessage($"{name}: {refused.Message}");
            return;
        }

        using (engine)
        {
            ReferenceFixture fixture = ReferenceFixture.Load(Path.Combine(dir, "reference.json"));
            var requests = fixture.Cases.Select((c, i) => new GenerateRequest(
                $"r{i}", c.PromptTokenIds, new SamplingParams { Temperature = 0, MaxTokens = c.OutputTokenIds.Count, IgnoreEos = true, Logprobs = 5 })).ToList();
            IReadOnlyList<RequestOutput> outputs = engine.Generate(requests);
            int matched = 0, total = 0;
            for (int i = 0; i < requests.Count; i++)
            {
                var positions = GeneratedPositions.Of(outputs[i]);
                int count = fixture.Cases[i].OutputTokenIds.Count;
                int caseMatched = LogprobsComparison.AssertClose(
                    $"{name} case {i}", fixture.Cases[i].OutputLogprobs, positions, dtype == "float32" ? Fp32LogprobTolerance : Bf16LogprobTolerance);
                Assert.True(dtype != "float32" || caseMatched == count, $"{name} case {i}: {caseMatched} of {count} tokens identical before the first divergence");
                matched += caseMatched;
                total += count;
            }

            TestContext.Current.SendDiagnosticMessage($"{name} ({dtype}, 2 GPUs): {matched}/{total} greedy tokens identical to transformers before any divergence");
        }
    }
}
