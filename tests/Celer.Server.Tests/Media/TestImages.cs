using System.Buffers.Binary;
using System.IO.Compression;
using System.Runtime.InteropServices;
using SkiaSharp;

namespace Celer.Server.Tests.Media;

/// <summary>
/// Images made in the test: encoded by SkiaSharp where it has an encoder (PNG, JPEG, WebP), written byte by byte
/// where it has none (palette PNG, GIF) or where the bytes are the point (a header alone).
/// </summary>
internal static class TestImages
{
    /// <summary>Random RGBA pixels (never all one value), alpha 255 unless <paramref name="alpha"/>.</summary>
    public static byte[] RandomRgba(int width, int height, int seed, bool alpha = false)
    {
        var random = new Random(seed);
        var pixels = new byte[width * height * 4];
        random.NextBytes(pixels);
        if (!alpha)
        {
            for (var i = 3; i < pixels.Length; i += 4)
                pixels[i] = 255;
        }
        return pixels;
    }

    /// <summary>A smooth RGBA picture (JPEG's case: its error on noise would say little).</summary>
    public static byte[] GradientRgba(int width, int height)
    {
        var pixels = new byte[width * height * 4];
        for (var y = 0; y < height; y++)
        {
            for (var x = 0; x < width; x++)
            {
                var i = (y * width + x) * 4;
                pixels[i] = (byte)(x * 255 / (width - 1));
                pixels[i + 1] = (byte)(y * 255 / (height - 1));
                pixels[i + 2] = (byte)((x + y) * 127 / (width + height - 2) + 64);
                pixels[i + 3] = 255;
            }
        }
        return pixels;
    }

    /// <summary>RGBA (unpremultiplied) or grey pixels encoded by SkiaSharp.</summary>
    public static byte[] Encode(int width, int height, byte[] pixels, SKColorType colorType, Func<SKPixmap, SKData?> encode)
    {
        var info = new SKImageInfo(width, height, colorType, colorType == SKColorType.Gray8 ? SKAlphaType.Opaque : SKAlphaType.Unpremul);
        var handle = GCHandle.Alloc(pixels, GCHandleType.Pinned);
        try
        {
            using var pixmap = new SKPixmap(info, handle.AddrOfPinnedObject(), info.RowBytes);
            using var data = encode(pixmap) ?? throw new InvalidOperationException($"SkiaSharp did not encode the {colorType} image.");
            return data.ToArray();
        }
        finally
        {
            handle.Free();
        }
    }

    public static byte[] Png(int width, int height, byte[] rgba) =>
        Encode(width, height, rgba, SKColorType.Rgba8888, p => p.Encode(SKEncodedImageFormat.Png, 100));

    /// <summary>RGBA pixels to the RGB bytes an opaque image decodes to.</summary>
    public static byte[] DropAlpha(byte[] rgba)
    {
        var rgb = new byte[rgba.Length / 4 * 3];
        for (var i = 0; i < rgba.Length / 4; i++)
            rgba.AsSpan(i * 4, 3).CopyTo(rgb.AsSpan(i * 3));
        return rgb;
    }

    /// <summary>PIL's RGBA onto white, computed in floating point: round((c·a + 255·(255 − a)) / 255).</summary>
    public static byte[] OnWhite(byte[] rgba)
    {
        var rgb = new byte[rgba.Length / 4 * 3];
        for (var i = 0; i < rgba.Length / 4; i++)
        {
            double alpha = rgba[i * 4 + 3];
            for (var c = 0; c < 3; c++)
                rgb[i * 3 + c] = (byte)Math.Round((rgba[i * 4 + c] * alpha + 255 * (255 - alpha)) / 255, MidpointRounding.AwayFromZero);
        }
        return rgb;
    }

    /// <summary>An 8-bit palette PNG (colour type 3) with a tRNS chunk giving each palette entry's alpha.</summary>
    public static byte[] PalettePng(int width, int height, byte[] paletteRgb, byte[] paletteAlpha, byte[] indices)
    {
        using var raw = new MemoryStream();
        for (var y = 0; y < height; y++)
        {
            raw.WriteByte(0);   // filter: none
            raw.Write(indices, y * width, width);
        }
        return Png(Ihdr(width, height, colorType: 3), ("PLTE", paletteRgb), ("tRNS", paletteAlpha), ("IDAT", Zlib(raw.ToArray())));
    }

    /// <summary>
    /// An RGB PNG's header and the first row of its pixel data, all zeros (the shape of a decompression bomb: a
    /// huge size in a few bytes), then its end: a codec opens it (it reads up to the first IDAT), decoding finds it short.
    /// </summary>
    public static byte[] PngClaiming(int width, int height) => Png(Ihdr(width, height, colorType: 2), ("IDAT", Zlib(new byte[1 + Math.Min(width, 1 << 16) * 3])));

    private static byte[] Ihdr(int width, int height, byte colorType)
    {
        var ihdr = new byte[13];
        BinaryPrimitives.WriteInt32BigEndian(ihdr, width);
        BinaryPrimitives.WriteInt32BigEndian(ihdr.AsSpan(4), height);
        ihdr[8] = 8;            // bit depth
        ihdr[9] = colorType;    // compression, filter and interlace methods 0
        return ihdr;
    }

    private static byte[] Png(byte[] ihdr, params (string Type, byte[] Data)[] chunks)
    {
        using var png = new MemoryStream();
        png.Write([0x89, (byte)'P', (byte)'N', (byte)'G', 0x0D, 0x0A, 0x1A, 0x0A]);
        var word = new byte[4];
        foreach (var (type, data) in chunks.Prepend(("IHDR", ihdr)).Append(("IEND", Array.Empty<byte>())))
        {
            BinaryPrimitives.WriteInt32BigEndian(word, data.Length);
            png.Write(word);
            var typed = System.Text.Encoding.ASCII.GetBytes(type).Concat(data).ToArray();
            png.Write(typed);
            BinaryPrimitives.WriteUInt32BigEndian(word, Crc32(typed));
            png.Write(word);
        }
        return png.ToArray();
    }

    private static byte[] Zlib(byte[] data)
    {
        using var compressed = new MemoryStream();
        using (var zlib = new ZLibStream(compressed, CompressionLevel.Optimal))
            zlib.Write(data);
        return compressed.ToArray();
    }

    /// <summary>CRC-32 (ISO 3309, PNG's chunk checksum), bit by bit.</summary>
    private static uint Crc32(byte[] data)
    {
        var crc = 0xFFFFFFFFu;
        foreach (var b in data)
        {
            crc ^= b;
            for (var k = 0; k < 8; k++)
                crc = (crc & 1) != 0 ? 0xEDB88320u ^ (crc >> 1) : crc >> 1;
        }
        return ~crc;
    }

    /// <summary>
    /// A GIF89a of up to four colours and one frame per entry of <paramref name="frames"/> (palette indices, full canvas).
    /// The LZW stream sends a clear code after every two pixels, so codes stay 3 bits wide and no table is needed.
    /// </summary>
    public static byte[] Gif(int width, int height, byte[] paletteRgb, params byte[][] frames)
    {
        using var gif = new MemoryStream();
        gif.Write("GIF89a"u8);
        WriteUInt16(gif, width);
        WriteUInt16(gif, height);
        gif.Write([0xF1, 0, 0]);   // global colour table of 4 entries (2^(1+1)), background 0, no aspect ratio
        gif.Write(paletteRgb.AsSpan(0, 12));
        foreach (var frame in frames)
        {
            gif.Write([0x21, 0xF9, 4, 0x04, 10, 0, 0, 0]);   // graphic control: keep the frame, 0.1 s, no transparency
            gif.WriteByte(0x2C);
            WriteUInt16(gif, 0);
            WriteUInt16(gif, 0);
            WriteUInt16(gif, width);
            WriteUInt16(gif, height);
            gif.WriteByte(0);
            gif.WriteByte(2);   // LZW minimum code size: clear = 4, end = 5
            var data = Lzw(frame);
            for (var at = 0; at < data.Length; at += 255)
            {
                var block = Math.Min(255, data.Length - at);
                gif.WriteByte((byte)block);
                gif.Write(data, at, block);
            }
            gif.WriteByte(0);
        }
        gif.WriteByte(0x3B);
        return gif.ToArray();
    }

    private static byte[] Lzw(byte[] indices)
    {
        const int Clear = 4, End = 5;
        var codes = new List<int>();
        for (var i = 0; i < indices.Length; i++)
        {
            if (i % 2 == 0)
                codes.Add(Clear);
            codes.Add(indices[i]);
        }
        codes.Add(End);
        var bytes = new List<byte>();
        int buffer = 0, bits = 0;
        foreach (var code in codes)
        {
            buffer |= code << bits;
            bits += 3;
            while (bits >= 8)
            {
                bytes.Add((byte)buffer);
                buffer >>= 8;
                bits -= 8;
            }
        }
        if (bits > 0)
            bytes.Add((byte)buffer);
        return [.. bytes];
    }

    private static void WriteUInt16(Stream stream, int value)
    {
        stream.WriteByte((byte)value);
        stream.WriteByte((byte)(value >> 8));
    }

    public static string DataUrl(byte[] bytes, string mediaType = "image/png") => $"data:{mediaType};base64,{Convert.ToBase64String(bytes)}";
}
