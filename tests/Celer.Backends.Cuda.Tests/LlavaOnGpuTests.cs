using Celer.Engine;
using Celer.Engine.Execution;
using Celer.Engine.Tests.Support;
using Celer.Models.Config;
using Celer.Models.Multimodal;
using Celer.Models.Weights;
using Celer.TestSupport;

namespace Celer.Backends.Cuda.Tests;

/// <summary>
/// The tiny LLaVA fixtures on the GPU (a CLIP tower with Llama, a SigLIP tower with Qwen2): the tower and projector
/// against transformers' features (fp32 and the model's bf16), and the engine's greedy output with images against
/// transformers', with chunks that split images.
/// </summary>
public sealed class LlavaOnGpuTests
{
    /// <param name="tolerance">
    /// fp32: the worst element relative to max(1, |x|) (cuBLAS in pure fp32 and fp32 attention; 1.6e-5 on the CPU). bf16:
    /// the error's norm relative to the features' norm, since every activation is rounded to 8 bits of mantissa through the
    /// tower and projector and a few elements lose most of theirs to cancellation (the worst one measured 0.26 of max(1, |x|)).
    /// </param>
    [Theory]
    [InlineData("llava-clip-bf16", DType.F32, 1e-3f)]
    [InlineData("llava-clip-bf16", DType.BF16, 5e-2f)]
    [InlineData("llava-siglip-bf16", DType.F32, 1e-3f)]
    [InlineData("llava-siglip-bf16", DType.BF16, 5e-2f)]
    public void Features_match_transformers(string fixture, DType dtype, float tolerance)
    {
        Gpu.Require();
        string model = Path.Combine(RepoPaths.Fixtures, "multimodal", fixture);
        MultimodalReference reference = MultimodalReference.Load(model);
        ModelConfig config = ModelConfig.Load(model);
        using var weights = SafetensorsWeightSource.Open(model);
#pragma warning disable CA2000 // the encoder owns its backend
        using var encoder = new LlavaImageEncoder(config.Vision!, config.HiddenSize, weights, new CudaBackend(Gpu.Device, dtype), maxImagesPerPass: 2);
#pragma warning restore CA2000
        encoder.Encode([reference.Images[1].PixelValues, reference.Images[0].PixelValues]);
        using var reader = new CudaBackend(Gpu.Device, dtype);
        var got = new float[2 * encoder.FeaturesPerImage * encoder.Features.Columns];
        reader.CopyToHost(encoder.Features, 2 * encoder.FeaturesPerImage, got);
        float[] expected = [.. reference.Images[1].Features, .. reference.Images[0].Features];
        double worst = MultimodalReference.WorstFeatureError(expected, got);
        double normwise = Math.Sqrt(expected.Select((e, i) => (double)(e - got[i]) * (e - got[i])).Sum() / expected.Sum(e => (double)e * e));
        TestContext.Current.SendDiagnosticMessage($"{fixture} features {dtype}: worst element {worst:E2}, normwise {normwise:E2}");
        double error = dtype == DType.F32 ? worst : normwise;
        Assert.True(error <= tolerance, $"{dtype}: features differ by {error:E2} ({(dtype == DType.F32 ? "worst element" : "normwise")}), above {tolerance:E1}");
    }

    [Theory]
    [InlineData("llava-clip-bf16", "float32", null, 2e-3f)]
    [InlineData("llava-clip-bf16", "float32", 8, 2e-3f)]
    [InlineData("llava-clip-bf16", "auto", null, 0.35f)]
    [InlineData("llava-siglip-bf16", "float32", 8, 2e-3f)]
    [InlineData("llava-siglip-bf16", "auto", null, 0.35f)]
    public void Greedy_output_with_images_matches_transformers(string fixture, string dtype, int? maxNumBatchedTokens, float tolerance)
    {
        Gpu.Require();
        string model = Path.Combine(RepoPaths.Fixtures, "multimodal", fixture);
        MultimodalReference reference = MultimodalReference.Load(model);
        using LlmEngine engine = ModelLoader.LoadOffline(new EngineArgs
        {
            Model = model,
            Device = "cuda",
            Dtype = dtype,
            MaxModelLen = 128,
            MaxNumBatchedTokens = maxNumBatchedTokens,
            MaxNumSeqs = 8,
            KvCacheMemoryBytes = 64L << 20,
        }).Engine;
        var requests = reference.Text.Cases.Select((c, i) => new GenerateRequest(
            $"r{i}", reference.CollapsedPrompt(i), new SamplingParams { Temperature = 0, MaxTokens = c.OutputTokenIds.Count, IgnoreEos = true, Logprobs = 5 })
        {
            Images = [.. reference.CaseImages[i].Select(j => reference.Images[j].Image)],
        }).ToList();

        IReadOnlyList<RequestOutput> outputs = engine.Generate(requests);
        int matched = 0;
        for (int i = 0; i < requests.Count; i++)
        {
            matched += LogprobsComparison.AssertClose($"{fixture} {dtype} case {i}", reference.Text.Cases[i].OutputLogprobs, GeneratedPositions.Of(outputs[i]), tolerance);
        }

        // bf16 may diverge inside the top-5 (vLLM's criterion); fp32 follows every token.
        int total = reference.Text.Cases.Sum(c => c.OutputTokenIds.Count);
        Assert.True(dtype == "auto" ? matched >= reference.Text.Cases.Count : matched == total, $"{matched} of {total} tokens identical before the first divergences");
    }
}
