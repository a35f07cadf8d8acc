using System.Security.Cryptography;

namespace Celer.Models.Multimodal;

/// <summary>
/// A decoded image as the image processors take it: 8-bit RGB, row-major, three bytes per pixel (PIL's "RGB" mode,
/// what transformers' processors convert every input to). <see cref="Hash"/> identifies its pixels: equal images share
/// their vision-encoder output and their prefix-cache blocks, different ones never do.
/// </summary>
public sealed class RgbImage
{
    public RgbImage(int width, int height, byte[] pixels)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(width, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(height, 1);
        ArgumentNullException.ThrowIfNull(pixels);
        if (pixels.Length != (long)width * height * 3)
        {
            throw new ArgumentException($"An RGB image of {width} × {height} has {(long)width * height * 3} bytes, not {pixels.Length}.", nameof(pixels));
        }

        Width = width;
        Height = height;
        Pixels = pixels;
        Span<byte> header = stackalloc byte[8];
        BitConverter.TryWriteBytes(header, width);
        BitConverter.TryWriteBytes(header[4..], height);
        using var sha = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        sha.AppendData(header);
        sha.AppendData(pixels);
        Hash = Convert.ToHexStringLower(sha.GetHashAndReset());
    }

    public int Width { get; }

    public int Height { get; }

    /// <summary>RGB bytes, row by row from the top.</summary>
    public byte[] Pixels { get; }

    /// <summary>SHA-256 of the size and the pixels, lower-case hex.</summary>
    public string Hash { get; }
}
