using Celer.Models.Multimodal;
using Celer.Server.Serving;
using SkiaSharp;

namespace Celer.Server.Media;

/// <summary>
/// Encoded image bytes to the RGB the image processors take, as vLLM's <c>ImageMediaIO</c> loads them with PIL:
/// <c>Image.open</c> (the first frame of an animation, no EXIF rotation, no colour management) then conversion to RGB
/// (greyscale expanded, palettes resolved, alpha dropped), except that an image PIL opens as RGBA is composited onto
/// white (vLLM's <c>rgba_to_rgb</c>, <c>rgba_background_color</c> (255, 255, 255)). Decoding is SkiaSharp's; the size is
/// read from the header and checked before any pixel is allocated.
/// </summary>
internal static class ImageDecoder
{
    /// <summary>PNG's colour type for RGB with alpha (IHDR byte 9), the one PNG kind PIL opens as RGBA.</summary>
    private const byte PngColorTypeRgba = 6;

    /// <exception cref="OpenAIException">400 naming <paramref name="param"/>: empty, not an image, too large, truncated or corrupt.</exception>
    public static RgbImage Decode(byte[] data, long maxPixels, string param)
    {
        if (data.Length == 0)
            throw OpenAIException.BadRequest($"The image of {param} is empty.", param);

        using var encoded = SKData.CreateCopy(data);
        // SkiaSharp annotates Create as never null, but it returns null for bytes no codec recognizes.
#pragma warning disable CA1508
        using var codec = SKCodec.Create(encoded)
            ?? throw OpenAIException.BadRequest($"The image of {param} is not an image in a format the server reads (PNG, JPEG, WebP, GIF, BMP, ICO), or its header is corrupt.", param);
#pragma warning restore CA1508
        var (width, height) = (codec.Info.Width, codec.Info.Height);
        if (width <= 0 || height <= 0)
            throw OpenAIException.BadRequest($"The image of {param} has no pixels ({width} × {height}).", param);
        if ((long)width * height > maxPixels)
            throw OpenAIException.BadRequest($"The image of {param} is {width} × {height} pixels, more than the {maxPixels:N0} the server decodes.", param);

        // No colour space on the destination: Skia converts nothing, as PIL applies no ICC profile.
        var rgbaInfo = new SKImageInfo(width, height, SKColorType.Rgba8888, SKAlphaType.Unpremul);
        var rgba = new byte[(long)width * height * 4];
        SKCodecResult result;
        unsafe
        {
            fixed (byte* pixels = rgba)
                result = codec.GetPixels(rgbaInfo, (IntPtr)pixels);
        }
        if (result != SKCodecResult.Success)
        {
            // PIL refuses a truncated image too (ImageFile.LOAD_TRUNCATED_IMAGES is off); Skia would hand back the part it read.
            throw OpenAIException.BadRequest(result == SKCodecResult.IncompleteInput
                ? $"The image of {param} is truncated."
                : $"The image of {param} could not be decoded: it is corrupt.", param);
        }

        var composite = codec.Info.AlphaType != SKAlphaType.Opaque && OpensAsRgba(codec.EncodedFormat, data);
        return new RgbImage(width, height, ToRgb(rgba, composite));
    }

    /// <summary>
    /// Whether PIL opens the image in its RGBA mode (which vLLM composites onto white) rather than one whose conversion
    /// to RGB drops the transparency: a PNG of colour type 6 (not a palette, greyscale-with-alpha or tRNS one), any
    /// WebP, BMP or ICO with alpha; never a GIF (PIL's palette mode; Skia gives its transparent pixels as black where
    /// PIL gives the palette colour).
    /// </summary>
    private static bool OpensAsRgba(SKEncodedImageFormat format, byte[] data) => format switch
    {
        // The signature (8), IHDR's length and type (8), width and height (8) and bit depth (1) come before the colour type.
        SKEncodedImageFormat.Png => data.Length > 25 && data[25] == PngColorTypeRgba,
        SKEncodedImageFormat.Gif => false,
        _ => true,
    };

    /// <summary>RGBA (unpremultiplied) to RGB: alpha dropped, or blended onto white with PIL's rounding of x / 255.</summary>
    private static byte[] ToRgb(byte[] rgba, bool compositeOnWhite)
    {
        var pixelCount = rgba.Length / 4;
        var rgb = new byte[(long)pixelCount * 3];
        for (long i = 0; i < pixelCount; i++)
        {
            var alpha = rgba[i * 4 + 3];
            for (var c = 0; c < 3; c++)
            {
                var value = rgba[i * 4 + c];
                rgb[i * 3 + c] = compositeOnWhite ? Blend(value, alpha) : value;
            }
        }
        return rgb;
    }

    /// <summary>PIL's paste through an "L" mask onto white: DIV255(255 · (255 − a) + value · a), Paste.c's BLEND.</summary>
    private static byte Blend(byte value, byte alpha)
    {
        var t = 255 * (255 - alpha) + value * alpha + 128;
        return (byte)(((t >> 8) + t) >> 8);
    }
}
