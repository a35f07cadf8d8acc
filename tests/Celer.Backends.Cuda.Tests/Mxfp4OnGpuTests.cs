using Celer.Engine;
using Celer.Engine.Execution;
using Celer.Engine.Tests.Support;
using Celer.TestSupport;

namespace Celer.Backends.Cuda.Tests;

/// <summary>
/// gpt-oss's MXFP4 experts kept packed on the GPU in bf16, through the whole engine: the fixture's experts packed into
/// MXFP4 (<see cref="Mxfp4Packing.WriteGptOssCheckpoints"/>) generate what a bf16 checkpoint of the values those codes
/// stand for generates. Its prompts of 1, 7, 19 and 40 tokens run every path of the experts (4 experts, top 2): moe_gemv
/// for decode rows, 16-row tiles for 19 tokens, 64-row tiles for 40.
/// </summary>
public sealed class Mxfp4OnGpuTests
{
    [Fact]
    public void Packed_mxfp4_experts_generate_what_their_decoded_values_generate()
    {
        Gpu.Require();
        string dir = Path.Combine(RepoPaths.FixtureModels, "gpt-oss-sinks-moe-bf16");
        ReferenceFixture fixture = ReferenceFixture.Load(Path.Combine(dir, "reference.json"));
        string mxfp4Dir = Directory.CreateTempSubdirectory("celer-mxfp4").FullName, valuesDir = Directory.CreateTempSubdirectory("celer-mxfp4-values").FullName;
        try
        {
            Mxfp4Packing.WriteGptOssCheckpoints(dir, mxfp4Dir, valuesDir);
            List<List<GeneratedPosition>> Run(string model)
            {
                using LlmEngine engine = ModelLoader.LoadOffline(new EngineArgs
                {
                    Model = model,
                    Device = "cuda",
                    Dtype = "bfloat16",
                    MaxModelLen = 128,
                    KvCacheMemoryBytes = 64L << 20,
                }).Engine;
                var requests = fixture.Cases.Select((c, i) => new GenerateRequest(
                    $"r{i}", c.PromptTokenIds, new SamplingParams { Temperature = 0, MaxTokens = c.OutputTokenIds.Count, IgnoreEos = true, Logprobs = 5 })).ToList();
                return [.. engine.Generate(requests).Select(GeneratedPositions.Of)];
            }

            List<List<GeneratedPosition>> values = Run(valuesDir), packed = Run(mxfp4Dir);
            for (int i = 0; i < values.Count; i++)
            {
                // The first token comes from the prefill. Decode rows sum each expert row's blocks in another order than
                // the 16-bit kernel, and in bf16 a sum one rounding apart moves the activations by a bf16 step and may
                // flip a routing decision (case 0, step 1 on the H200: −1.318 against −1.339), so the logprobs are held
                // to the engine tests' bound for MoE models in bf16 and the tokens to vLLM's criterion.
                var reference = values[i].Select(p => new ReferenceLogprobs(p.TokenId, p.Logprob, p.Top)).ToList();
                int matched = LogprobsComparison.AssertClose($"case {i}", reference, packed[i], EngineOnGpuTests.Bf16MoeLogprobTolerance);
                Assert.True(matched >= 1, $"case {i}: the first token differs");
            }
        }
        finally
        {
            Directory.Delete(mxfp4Dir, recursive: true);
            Directory.Delete(valuesDir, recursive: true);
        }
    }
}
