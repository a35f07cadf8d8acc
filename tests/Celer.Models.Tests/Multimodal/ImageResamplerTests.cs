using System.Text.Json;
using Celer.Models.Multimodal;
using Celer.TestSupport;
using Xunit;

namespace Celer.Models.Tests.Multimodal;

public class ImageResamplerTests
{
    /// <summary>
    /// tests/fixtures/multimodal/pil-resize/reference.json, made by tools/reference/make_resize_fixtures.py with Pillow
    /// main (13.0.0.dev0, built from source): every filter on downscales, upscales, one axis, 1 × 1, and a 2 × 250 image
    /// that Pillow 12.2+ resamples vertically first. Debian's Pillow 9.4 gives the same bytes except that one's
    /// lanczos, bilinear, bicubic and hamming resizes to 3 × 40.
    /// </summary>
    public static TheoryData<int> PillowCases() => new(Enumerable.Range(0, PillowReference.Value.Cases.Count));

    private static readonly Lazy<(List<RgbImage> Images, List<(int Image, PilResample Filter, int Width, int Height, byte[] Rgb)> Cases)> PillowReference = new(LoadPillowReference);

    [Theory]
    [MemberData(nameof(PillowCases))]
    public void Matches_pillow_resize_byte_for_byte(int index)
    {
        var (imageIndex, filter, width, height, expected) = PillowReference.Value.Cases[index];
        var image = PillowReference.Value.Images[imageIndex];

        byte[] planar = ImageResampler.Resize(image, width, height, filter, new PixelWindow(0, 0, width, height));

        byte[] rgb = Interleave(planar, width, height);
        int mismatches = rgb.Zip(expected).Count(p => p.First != p.Second);
        Assert.True(mismatches == 0,
            $"{filter} {image.Width}x{image.Height} -> {width}x{height}: {mismatches} of {rgb.Length} bytes differ from Pillow's");
    }

    [Theory]
    [MemberData(nameof(PillowCases))]
    public void A_window_is_that_part_of_pillow_resize(int index)
    {
        var (imageIndex, filter, width, height, expected) = PillowReference.Value.Cases[index];
        var image = PillowReference.Value.Images[imageIndex];
        var random = new Random(index);

        for (int trial = 0; trial < 4; trial++)
        {
            int left = random.Next(width), top = random.Next(height);
            var window = new PixelWindow(left, top, 1 + random.Next(width - left), 1 + random.Next(height - top));

            byte[] rgb = Interleave(ImageResampler.Resize(image, width, height, filter, window), window.Width, window.Height);

            for (int y = 0; y < window.Height; y++)
            {
                var expectedRow = expected.AsSpan(3 * ((window.Top + y) * width + window.Left), 3 * window.Width);
                Assert.True(expectedRow.SequenceEqual(rgb.AsSpan(3 * y * window.Width, 3 * window.Width)), $"{filter} {window}, row {y}");
            }
        }
    }

    [Fact]
    public void Downscaling_widens_the_filter_to_cover_every_input()
    {
        // Bilinear from 4 pixels to 2: support 1 × scale 2, so output 0 (centre 1.0) weighs inputs 0, 1, 2 by the tent
        // at -0.25, 0.25, 0.75 of the scaled support: 0.75, 0.75, 0.25, normalized to 3/7, 3/7, 1/7. Sampling without
        // antialiasing would average inputs 0 and 1 only, giving 3.5 instead of 5.
        var image = new RgbImage(4, 1, [0, 0, 0, 7, 7, 7, 14, 14, 14, 21, 21, 21]);

        byte[] planar = ImageResampler.Resize(image, 2, 1, PilResample.Bilinear, new PixelWindow(0, 0, 2, 1));

        Assert.Equal([5, 16, 5, 16, 5, 16], planar);
    }

    [Fact]
    public void Same_size_is_a_copy_whatever_the_filter()
    {
        var image = new RgbImage(2, 2, [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]);

        foreach (var filter in Enum.GetValues<PilResample>())
        {
            Assert.Equal([1, 4, 7, 10, 2, 5, 8, 11, 3, 6, 9, 12], ImageResampler.Resize(image, 2, 2, filter, new PixelWindow(0, 0, 2, 2)));
        }
    }

    private static byte[] Interleave(byte[] planar, int width, int height)
    {
        int plane = width * height;
        var rgb = new byte[3 * plane];
        for (int i = 0; i < plane; i++)
        {
            rgb[3 * i] = planar[i];
            rgb[3 * i + 1] = planar[plane + i];
            rgb[3 * i + 2] = planar[2 * plane + i];
        }

        return rgb;
    }

    private static (List<RgbImage>, List<(int, PilResample, int, int, byte[])>) LoadPillowReference()
    {
        string path = Path.Combine(RepoPaths.Fixtures, "multimodal", "pil-resize", "reference.json");
        using var doc = JsonDocument.Parse(File.ReadAllText(path));
        var images = doc.RootElement.GetProperty("images").EnumerateArray()
            .Select(i => new RgbImage(i.GetProperty("width").GetInt32(), i.GetProperty("height").GetInt32(), Convert.FromBase64String(i.GetProperty("rgb").GetString()!)))
            .ToList();
        var cases = doc.RootElement.GetProperty("cases").EnumerateArray()
            .Select(c => (c.GetProperty("image").GetInt32(), (PilResample)c.GetProperty("resample").GetInt32(),
                c.GetProperty("width").GetInt32(), c.GetProperty("height").GetInt32(), Convert.FromBase64String(c.GetProperty("rgb").GetString()!)))
            .ToList();
        return (images, cases);
    }
}
