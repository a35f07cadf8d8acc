using Celer.Server.Media;
using Celer.Server.Serving;
using SkiaSharp;

namespace Celer.Server.Tests.Media;

/// <summary>Decoding as vLLM's PIL loading does, on images SkiaSharp encoded or the test wrote; and what a client may send instead.</summary>
public class ImageDecoderTests
{
    private const string Param = "messages[0].content[1]";
    private const long MaxPixels = 89_478_485;

    private static Models.Multimodal.RgbImage Decode(byte[] bytes, long maxPixels = MaxPixels) => ImageDecoder.Decode(bytes, maxPixels, Param);

    private static OpenAIException Refused(byte[] bytes, long maxPixels = MaxPixels)
    {
        var e = Assert.Throws<OpenAIException>(() => Decode(bytes, maxPixels));
        Assert.Equal(400, e.StatusCode);
        Assert.Equal(Param, e.Param);
        Assert.Contains(Param, e.Message, StringComparison.Ordinal);
        return e;
    }

    [Fact]
    public void Png_decodes_to_its_exact_pixels()
    {
        var rgba = TestImages.RandomRgba(37, 23, seed: 1);
        var image = Decode(TestImages.Png(37, 23, rgba));
        Assert.Equal((37, 23), (image.Width, image.Height));
        Assert.Equal(TestImages.DropAlpha(rgba), image.Pixels);
    }

    [Fact]
    public void Rgba_png_is_composited_onto_white_as_vllm_does()
    {
        // Every alpha from 0 to 255 over random colours.
        var rgba = TestImages.RandomRgba(16, 16, seed: 2, alpha: true);
        for (var i = 0; i < 256; i++)
            rgba[i * 4 + 3] = (byte)i;
        var image = Decode(TestImages.Png(16, 16, rgba));
        Assert.Equal(TestImages.OnWhite(rgba), image.Pixels);
        Assert.Equal([255, 255, 255], image.Pixels[..3]);   // alpha 0 is white whatever its colour
    }

    [Fact]
    public void Greyscale_png_is_expanded_to_three_equal_channels()
    {
        var grey = new byte[9 * 7];
        new Random(3).NextBytes(grey);
        var image = Decode(TestImages.Encode(9, 7, grey, SKColorType.Gray8, p => p.Encode(SKEncodedImageFormat.Png, 100)));
        Assert.Equal(grey.SelectMany(g => new[] { g, g, g }).ToArray(), image.Pixels);
    }

    [Fact]
    public void Palette_png_resolves_its_palette_and_drops_its_transparency()
    {
        // PIL opens a palette PNG with tRNS as mode P, whose conversion to RGB keeps the palette colours: no compositing.
        byte[] palette = [200, 10, 20, 30, 220, 40, 50, 60, 240];
        byte[] indices = [0, 1, 2, 2, 1, 0];
        var image = Decode(TestImages.PalettePng(3, 2, palette, paletteAlpha: [255, 0, 128], indices));
        Assert.Equal(indices.SelectMany(i => palette[(i * 3)..(i * 3 + 3)]).ToArray(), image.Pixels);
    }

    [Fact]
    public void Jpeg_decodes_within_its_compression_error()
    {
        var rgba = TestImages.GradientRgba(64, 48);
        var image = Decode(TestImages.Encode(64, 48, rgba, SKColorType.Rgba8888, p => p.Encode(SKEncodedImageFormat.Jpeg, 95)));
        var expected = TestImages.DropAlpha(rgba);
        var errors = expected.Zip(image.Pixels, (e, a) => Math.Abs(e - a)).ToArray();
        // Quality 95 on a smooth gradient: a few levels on average, chroma subsampling at most a few more at a pixel.
        Assert.InRange(errors.Average(), 0.0, 2.0);
        Assert.InRange(errors.Max(), 0, 16);
    }

    [Fact]
    public void Lossless_webp_decodes_exactly_and_its_alpha_is_composited()
    {
        var opaque = TestImages.RandomRgba(20, 10, seed: 4);
        var lossless = new SKWebpEncoderOptions(SKWebpEncoderCompression.Lossless, 100);
        Assert.Equal(TestImages.DropAlpha(opaque), Decode(TestImages.Encode(20, 10, opaque, SKColorType.Rgba8888, p => p.Encode(lossless))).Pixels);

        // PIL opens a WebP with alpha as RGBA. Alpha 0 is left out: libwebp may rewrite the colour under it.
        var translucent = TestImages.RandomRgba(20, 10, seed: 5, alpha: true);
        for (var i = 3; i < translucent.Length; i += 4)
            translucent[i] = (byte)Math.Max(1, (int)translucent[i]);
        Assert.Equal(TestImages.OnWhite(translucent), Decode(TestImages.Encode(20, 10, translucent, SKColorType.Rgba8888, p => p.Encode(lossless))).Pixels);
    }

    [Fact]
    public void Animated_gif_gives_its_first_frame()
    {
        byte[] palette = [255, 0, 0, 0, 255, 0, 0, 0, 255, 250, 250, 250];
        byte[] first = [0, 1, 2, 3, 3, 2, 1, 0, 0, 0, 1, 1];
        byte[] second = [3, 3, 3, 3, 2, 2, 2, 2, 1, 1, 1, 1];
        var image = Decode(TestImages.Gif(4, 3, palette, first, second));
        Assert.Equal((4, 3), (image.Width, image.Height));
        Assert.Equal(first.SelectMany(i => palette[(i * 3)..(i * 3 + 3)]).ToArray(), image.Pixels);
    }

    [Fact]
    public void Empty_bytes_are_refused() => Assert.Contains("is empty", Refused([]).Message, StringComparison.Ordinal);

    [Theory]
    [InlineData("not an image at all, just text")]
    [InlineData("\u0089PNG\r\n\u001a\ngarbage after the signature")]
    [InlineData("GIF89a")]
    public void Bytes_no_codec_reads_are_refused(string text) =>
        Assert.Contains("not an image", Refused(System.Text.Encoding.Latin1.GetBytes(text)).Message, StringComparison.Ordinal);

    [Fact]
    public void Truncated_png_is_refused_not_half_decoded()
    {
        var png = TestImages.Png(64, 64, TestImages.RandomRgba(64, 64, seed: 6));
        Assert.Contains("truncated", Refused(png[..(png.Length / 2)]).Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Corrupt_pixel_data_is_refused()
    {
        var png = TestImages.Png(64, 64, TestImages.RandomRgba(64, 64, seed: 7));
        // The compressed pixels garbled past the headers; every chunk's length still fits.
        for (var i = 60; i < png.Length - 40; i += 3)
            png[i] ^= 0x5A;
        Refused(png);
    }

    [Fact]
    public void A_header_claiming_a_huge_image_is_refused_before_its_pixels_are_allocated()
    {
        var before = GC.GetAllocatedBytesForCurrentThread();
        var e = Refused(TestImages.PngClaiming(100_000, 100_000));
        Assert.Contains("100000 × 100000 pixels", e.Message, StringComparison.Ordinal);
        // Just over the cap: a decode buffer would be 358 MB; the refusal allocates next to nothing.
        Assert.Contains("9460 × 9460 pixels", Refused(TestImages.PngClaiming(9_460, 9_460)).Message, StringComparison.Ordinal);
        Assert.InRange(GC.GetAllocatedBytesForCurrentThread() - before, 0, 1 << 20);
    }

    [Fact]
    public void The_pixel_cap_is_the_one_given()
    {
        var png = TestImages.Png(10, 10, TestImages.RandomRgba(10, 10, seed: 8));
        Assert.Equal(10, Decode(png, maxPixels: 100).Width);
        Refused(png, maxPixels: 99);
    }

    [Fact]
    public void Zero_width_image_is_refused() => Refused(TestImages.PngClaiming(0, 10));

    [Fact]
    public void An_image_whose_pixel_data_ends_early_is_refused() =>
        Assert.Contains("truncated", Refused(TestImages.PngClaiming(40, 30)).Message, StringComparison.Ordinal);
}
