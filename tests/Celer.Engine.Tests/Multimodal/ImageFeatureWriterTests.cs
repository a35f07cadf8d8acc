using Celer.Backends.Cpu;
using Celer.Engine.Execution;
using Celer.Engine.Multimodal;
using Celer.Models.Backend;
using Celer.Models.Config;
using Celer.Models.Multimodal;
using Celer.Models.Weights;
using Celer.TestSupport;
using Xunit;

namespace Celer.Engine.Tests.Multimodal;

/// <summary>
/// The encoder cache of <see cref="ImageFeatureWriter"/> with the tiny LLaVA's real tower on the CPU: an image split over
/// two steps, or shown again, is encoded once while the cache holds it; the least recently used image goes first; a step
/// with more images than the cache holds still reads every one; and every row written is transformers' feature row.
/// </summary>
public sealed class ImageFeatureWriterTests : IDisposable
{
    private static readonly string Model = Path.Combine(RepoPaths.Fixtures, "multimodal", "llava-clip-bf16");

    private readonly MultimodalReference _reference = MultimodalReference.Load(Model);
    private readonly SafetensorsWeightSource _weights = SafetensorsWeightSource.Open(Model);
    private readonly CpuBackend _backend = new(DType.BF16);
    private readonly ImageFeatureWriter _writer;
    private readonly int _features, _hidden;

    public ImageFeatureWriterTests()
    {
        ModelConfig config = ModelConfig.Load(Model);
        _hidden = config.HiddenSize;
#pragma warning disable CA2000 // the writer owns the encoder, and the encoder its backend
        _writer = new ImageFeatureWriter(new LlavaImageEncoder(config.Vision!, _hidden, _weights, new CpuBackend(DType.BF16), maxImagesPerPass: 1), _backend, 64, _hidden);
#pragma warning restore CA2000
        _features = config.Vision!.FeaturesPerImage;
    }

    public void Dispose()
    {
        _writer.Dispose();
        _backend.Dispose();
        _weights.Dispose();
    }

    /// <summary>Image <paramref name="pixels"/> of the fixture under another name (the cache keys by hash alone).</summary>
    private PromptImage Image(string hash, int pixels) => new(0, _features, hash, _reference.Images[pixels].PixelValues);

    /// <summary>Writes the slices, then checks each against the features transformers made of its image's pixels.</summary>
    private void WriteAndCheck(params (PromptImage Image, int Pixels, int First, int Row, int Count)[] slices)
    {
        _writer.Write([.. slices.Select(s => new ImageSlice(s.Image, s.First, s.Row, s.Count))]);
        var buffer = new float[64 * _hidden];
        _backend.CopyToHost(_writer.Buffer, 64, buffer);
        foreach ((PromptImage image, int pixels, int first, int row, int count) in slices)
        {
            double worst = MultimodalReference.WorstFeatureError(
                _reference.Images[pixels].Features.AsSpan(first * _hidden, count * _hidden), buffer.AsSpan(row * _hidden, count * _hidden));
            Assert.True(worst <= 1e-4, $"{image.Hash}: feature rows {first}..{first + count - 1} at batch rows {row}.. differ by {worst:E2}");
        }
    }

    [Fact]
    public void An_image_split_over_steps_or_shown_again_is_encoded_once()
    {
        PromptImage a = Image("a", 0), b = Image("b", 1);
        Assert.Equal(4, _writer.CachedImages);
        WriteAndCheck((a, 0, 0, 0, 10));
        WriteAndCheck((a, 0, 10, 3, 6), (b, 1, 0, 9, 5));   // a's rest from the cache, b encoded
        WriteAndCheck((b, 1, 5, 0, 11), (a, 0, 0, 20, 16));
        Assert.Equal(2, _writer.EncodedImages);
    }

    [Fact]
    public void The_least_recently_used_image_leaves_first_and_a_crowded_step_still_reads_every_image()
    {
        PromptImage[] images = [.. Enumerable.Range(0, 6).Select(i => Image($"i{i}", i % 2))];
        // Six images in one step, the cache holding four: each is read straight from its pass.
        WriteAndCheck([.. images.Select((image, i) => (image, i % 2, 0, i * 10, 10))]);
        Assert.Equal(6, _writer.EncodedImages);
        // i2..i5 are cached (i0 and i1 were pushed out); reading i2 makes i3 the oldest.
        WriteAndCheck((images[2], 0, 0, 0, 16));
        Assert.Equal(6, _writer.EncodedImages);
        WriteAndCheck((images[0], 0, 0, 0, 16));   // encoded again, in i3's slot
        Assert.Equal(7, _writer.EncodedImages);
        WriteAndCheck((images[2], 0, 0, 0, 16), (images[4], 0, 0, 16, 16), (images[5], 1, 0, 32, 16));
        Assert.Equal(7, _writer.EncodedImages);
        WriteAndCheck((images[3], 1, 0, 0, 16));
        Assert.Equal(8, _writer.EncodedImages);
    }
}
