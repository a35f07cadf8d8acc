using Celer.Engine.Execution;
using Celer.Engine.Tests.Support;
using Celer.Models.Multimodal;
using Celer.TestSupport;
using Xunit;

namespace Celer.Engine.Tests.Multimodal;

/// <summary>
/// The tiny LLaVA fixture through the whole CPU engine, images given as RGB pixels: placeholder expansion, the model's own
/// image processor, the vision tower, features merged at the placeholders, against transformers' greedy outputs; chunked
/// prefill that splits an image; prefix-cache keys that tell images apart.
/// </summary>
public sealed class LlavaEngineTests
{
    private static readonly string Model = Path.Combine(RepoPaths.Fixtures, "multimodal", "llava-clip-bf16");

    private static LlmEngine Engine(int? maxNumBatchedTokens = null, bool prefixCaching = true, string? model = null) => ModelLoader.LoadOffline(new EngineArgs
    {
        Model = model ?? Model,
        MaxModelLen = 128,
        MaxNumBatchedTokens = maxNumBatchedTokens,
        MaxNumSeqs = 8,
        EnablePrefixCaching = prefixCaching,
        Seed = 1,
    }).Engine;

    private static SamplingParams Greedy(int maxTokens) => new() { Temperature = 0, MaxTokens = maxTokens, IgnoreEos = true, Logprobs = 5 };

    private static List<int> Tokens(RequestOutput output) => [.. output.Outputs.SelectMany(o => o.TokenIdsDelta)];

    private static GenerateRequest Request(MultimodalReference reference, int index, string id) =>
        new(id, reference.CollapsedPrompt(index), Greedy(reference.Text.Cases[index].OutputTokenIds.Count))
        {
            Images = [.. reference.CaseImages[index].Select(i => reference.Images[i].Image)],
        };

    [Theory]
    [InlineData("llava-clip-bf16", null)]   // every prompt whole in one step, all five in one batch
    [InlineData("llava-clip-bf16", 8)]      // 8-token chunks: every image's 16 placeholders split over two or three steps
    [InlineData("llava-siglip-bf16", 8)]    // a SigLIP tower and a Qwen2 language model
    public void Greedy_output_with_images_follows_transformers(string fixture, int? maxNumBatchedTokens)
    {
        MultimodalReference reference = MultimodalReference.Load(Path.Combine(RepoPaths.Fixtures, "multimodal", fixture));
        using LlmEngine engine = Engine(maxNumBatchedTokens, model: Path.Combine(RepoPaths.Fixtures, "multimodal", fixture));
        IReadOnlyList<RequestOutput> outputs = engine.Generate([.. reference.Text.Cases.Select((_, i) => Request(reference, i, $"r{i}"))]);

        for (int i = 0; i < reference.Text.Cases.Count; i++)
        {
            ReferenceCase c = reference.Text.Cases[i];
            Assert.Equal(c.PromptTokenIds, outputs[i].PromptTokenIds);   // expanded as LlavaProcessor expands them
            int matched = LogprobsComparison.AssertClose($"llava case {i}", c.OutputLogprobs, GeneratedPositions.Of(outputs[i]), 2e-3f);
            Assert.Equal(c.OutputTokenIds.Count, matched);
        }
    }

    [Fact]
    public void The_prefix_cache_reuses_an_image_only_for_the_same_pixels()
    {
        MultimodalReference reference = MultimodalReference.Load(Model);
        using LlmEngine engine = Engine();
        // Case 1 shows image 1 at the prompt's start; the same prompt with image 0 must not read image 1's cached blocks.
        RequestOutput first = engine.Generate([Request(reference, 1, "first")])[0];
        RequestOutput again = engine.Generate([Request(reference, 1, "again")])[0];
        RequestOutput other = engine.Generate([Request(reference, 1, "other") with { Images = [reference.Images[0].Image] }])[0];
        RequestOutput copy = engine.Generate([Request(reference, 1, "copy") with
        {
            Images = [new RgbImage(reference.Images[1].Image.Width, reference.Images[1].Image.Height, [.. reference.Images[1].Image.Pixels])],
        }])[0];

        Assert.True(again.NumCachedTokens >= 16, $"the same image's blocks were not reused ({again.NumCachedTokens} cached tokens)");
        Assert.Equal(again.NumCachedTokens, copy.NumCachedTokens);   // equal pixels are the same image, whatever the object
        Assert.Equal(0, other.NumCachedTokens);
        Assert.Equal(Tokens(first), Tokens(again));
        Assert.Equal(Tokens(first), Tokens(copy));
        Assert.NotEqual(Tokens(first), Tokens(other));
    }

    [Fact]
    public void Placeholders_and_images_must_agree()
    {
        MultimodalReference reference = MultimodalReference.Load(Model);
        using LlmEngine engine = Engine();
        GenerateRequest twoPlaceholders = Request(reference, 2, "two");
        var e = Assert.Throws<EngineRequestException>(() => engine.Generate([twoPlaceholders with { Images = [reference.Images[0].Image] }]));
        Assert.Contains("2 image placeholder tokens", e.Message, StringComparison.Ordinal);
        e = Assert.Throws<EngineRequestException>(() => engine.Generate([Request(reference, 4, "text") with { Images = [reference.Images[0].Image] }]));
        Assert.Contains("0 image placeholder tokens", e.Message, StringComparison.Ordinal);

        // The engine still serves after the refusals.
        Assert.Single(engine.Generate([Request(reference, 0, "after")]));
    }
}
