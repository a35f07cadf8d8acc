using System.Buffers;
using System.Numerics;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace Celer.Models.Multimodal;

/// <summary>PIL's resampling filters under their <c>Image.Resampling</c> numbers, the numbers preprocessor_config.json writes as <c>resample</c>.</summary>
public enum PilResample
{
    Nearest = 0,
    Lanczos = 1,
    Bilinear = 2,
    Bicubic = 3,
    Box = 4,
    Hamming = 5,
}

/// <summary>A rectangle of pixels: columns <see cref="Left"/> .. + <see cref="Width"/>, rows <see cref="Top"/> .. + <see cref="Height"/>.</summary>
internal readonly record struct PixelWindow(int Left, int Top, int Width, int Height);

/// <summary>
/// Pillow's <c>Image.resize</c> of an 8-bit RGB image, bit for bit (src/libImaging/Resample.c and Geometry.c, Pillow
/// 12.2 and later). The convolution filters are separable: each output pixel of a pass is a weighted sum of the input
/// pixels under the filter, whose support widens by the downscale factor (so a downscale averages every input pixel,
/// the antialiasing). Pillow normalizes each output's weights to sum to 1 in double, rounds them to fixed point with
/// <see cref="PrecisionBits"/> fraction bits, sums in int32 from a half and clips the shifted sum to 0..255 after each
/// pass: the horizontal pass first, over only the rows the vertical pass reads. Nearest maps each output pixel's centre
/// back to an input pixel with Pillow's affine scaling.
/// <para>
/// Results are planar, three planes (R, G, B) of height × width bytes, which is how the image processors read them.
/// The passes run on <see cref="Vector{T}"/>: integer sums are exact in any order, so the lanes change nothing.
/// </para>
/// </summary>
internal static class ImageResampler
{
    // Pillow's PRECISION_BITS, 32 - 8 - 2: 8 bits for the pixel and 2 for the overshoot of filters with negative lobes.
    private const int PrecisionBits = 22;

    // Sums start at a half so that the final shift rounds to nearest.
    private const int Half = 1 << (PrecisionBits - 1);

    /// <summary>
    /// The part <paramref name="window"/> of Pillow's resize of <paramref name="image"/> to <paramref name="width"/> ×
    /// <paramref name="height"/>, as planar bytes of the window's size. Each output pixel of a pass depends only on
    /// its own taps, so the window is exactly that part of the whole resize; the rest is never computed.
    /// </summary>
    public static byte[] Resize(RgbImage image, int width, int height, PilResample filter, PixelWindow window)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(width, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(height, 1);
        if (window.Left < 0 || window.Top < 0 || window.Width < 1 || window.Height < 1 || window.Left + window.Width > width || window.Top + window.Height > height)
        {
            throw new ArgumentOutOfRangeException(nameof(window), window, $"Not inside the {width} × {height} output.");
        }

        if (width == image.Width && height == image.Height)
        {
            // Image.resize returns a copy when the size does not change.
            return ToPlanar(image, window);
        }

        if (filter == PilResample.Nearest)
        {
            return ResizeNearest(image, width, height, window);
        }

        bool horizontalPass = width != image.Width, verticalPass = height != image.Height;
        var vertical = Taps.Compute(image.Height, height, filter, window.Top, window.Height);
        // The rows the vertical pass reads; without one, the window's.
        int firstRow = verticalPass ? vertical.FirstInput : window.Top;
        int rowCount = verticalPass ? vertical.InputCount : window.Height;
        if (!horizontalPass)
        {
            return ConvolveColumns(ToPlanar(image, new PixelWindow(window.Left, firstRow, window.Width, rowCount)), window.Width, firstRow, vertical);
        }

        var horizontal = Taps.Compute(image.Width, width, filter, window.Left, window.Width);
        // Image.resize (Pillow 12.2+) resamples images taller than 100:1 vertically first when it shrinks their height.
        if (image.Height > 100L * image.Width && height < image.Height)
        {
            byte[] columns = ConvolveColumns(ToPlanar(image, new PixelWindow(0, firstRow, image.Width, rowCount)), image.Width, firstRow, vertical);
            return ConvolveRows(columns, image.Width, horizontal);
        }

        byte[] rows = ConvolveRows(image, firstRow, rowCount, horizontal);
        return verticalPass ? ConvolveColumns(rows, window.Width, firstRow, vertical) : rows;
    }

    /// <summary>The pixels of <paramref name="window"/> as three planes, R, G and B, of its height × width bytes.</summary>
    public static byte[] ToPlanar(RgbImage image, PixelWindow window)
    {
        int plane = window.Width * window.Height;
        byte[] planar = new byte[3 * plane];
        ReadOnlySpan<byte> rgb = image.Pixels;
        for (int y = 0; y < window.Height; y++)
        {
            ReadOnlySpan<byte> row = rgb.Slice(3 * ((window.Top + y) * image.Width + window.Left), 3 * window.Width);
            Deinterleave(row, planar.AsSpan(y * window.Width, window.Width), planar.AsSpan(plane + y * window.Width, window.Width), planar.AsSpan(2 * plane + y * window.Width, window.Width));
        }

        return planar;
    }

    private static void Deinterleave<T>(ReadOnlySpan<byte> rgb, Span<T> r, Span<T> g, Span<T> b)
        where T : unmanaged, INumberBase<T>
    {
        // Refs rather than indexers, which the JIT would bounds-check at every byte: it cannot prove that 3x + 2 stays
        // inside the row. The lengths are checked once here.
        int width = r.Length;
        if (rgb.Length != 3 * width || g.Length != width || b.Length != width)
        {
            throw new ArgumentException("An RGB row has three bytes for each pixel of each plane's row.");
        }

        ref byte source = ref MemoryMarshal.GetReference(rgb);
        ref T red = ref MemoryMarshal.GetReference(r), green = ref MemoryMarshal.GetReference(g), blue = ref MemoryMarshal.GetReference(b);
        for (int x = 0; x < width; x++)
        {
            Unsafe.Add(ref red, x) = T.CreateTruncating(Unsafe.Add(ref source, 3 * x));
            Unsafe.Add(ref green, x) = T.CreateTruncating(Unsafe.Add(ref source, 3 * x + 1));
            Unsafe.Add(ref blue, x) = T.CreateTruncating(Unsafe.Add(ref source, 3 * x + 2));
        }
    }

    /// <summary>
    /// Geometry.c's ImagingScaleAffine: output pixel x reads input column (int)(x0 + x·w/W), the position advancing by
    /// repeated addition from half a step, in double as Pillow does; a position past the edge reads black.
    /// </summary>
    private static byte[] ResizeNearest(RgbImage image, int width, int height, PixelWindow window)
    {
        var columns = NearestIndices(image.Width, width).AsSpan(window.Left, window.Width);
        var rows = NearestIndices(image.Height, height).AsSpan(window.Top, window.Height);
        int plane = window.Width * window.Height;
        byte[] planar = new byte[3 * plane];
        ReadOnlySpan<byte> rgb = image.Pixels;
        for (int y = 0; y < rows.Length; y++)
        {
            if (rows[y] < 0)
            {
                continue;
            }

            int rowStart = rows[y] * image.Width;
            for (int x = 0; x < columns.Length; x++)
            {
                if (columns[x] < 0)
                {
                    continue;
                }

                int source = 3 * (rowStart + columns[x]);
                int target = y * window.Width + x;
                planar[target] = rgb[source];
                planar[plane + target] = rgb[source + 1];
                planar[2 * plane + target] = rgb[source + 2];
            }
        }

        return planar;
    }

    /// <summary>Input index of each output position for nearest sampling, -1 where it falls outside the input.</summary>
    private static int[] NearestIndices(int inSize, int outSize)
    {
        // Pillow's resize box is float[4], hence the float step.
        double step = (double)(float)inSize / outSize;
        double position = step * 0.5;
        int[] indices = new int[outSize];
        for (int i = 0; i < outSize; i++)
        {
            int index = position < 0.0 ? -1 : (int)position;
            indices[i] = index < inSize ? index : -1;
            position += step;
        }

        return indices;
    }

    /// <summary>The horizontal pass over rows <paramref name="firstRow"/> .. + <paramref name="rowCount"/> of an RGB image.</summary>
    private static byte[] ConvolveRows(RgbImage image, int firstRow, int rowCount, Taps taps)
    {
        int inWidth = image.Width;
        byte[] rgb = image.Pixels;
        return ConvolveRows(rowCount, taps, (y, firstColumn, r, g, b) =>
            Deinterleave(rgb.AsSpan(3 * ((firstRow + y) * inWidth + firstColumn), 3 * r.Length), r, g, b));
    }

    /// <summary>The horizontal pass over every row of planar bytes <paramref name="inWidth"/> wide.</summary>
    private static byte[] ConvolveRows(byte[] planar, int inWidth, Taps taps)
    {
        int plane = planar.Length / 3;
        return ConvolveRows(plane / inWidth, taps, (y, firstColumn, r, g, b) =>
        {
            int start = y * inWidth + firstColumn;
            Widen(planar.AsSpan(start, r.Length), r);
            Widen(planar.AsSpan(plane + start, g.Length), g);
            Widen(planar.AsSpan(2 * plane + start, b.Length), b);
        });

        static void Widen(ReadOnlySpan<byte> source, Span<int> destination)
        {
            for (int x = 0; x < source.Length; x++)
            {
                destination[x] = source[x];
            }
        }
    }

    /// <summary>Loads one row's columns <paramref name="firstColumn"/> .. + r.Length, each channel into its span.</summary>
    private delegate void RowLoader(int row, int firstColumn, Span<int> r, Span<int> g, Span<int> b);

    private static byte[] ConvolveRows(int rowCount, Taps taps, RowLoader load)
    {
        int outWidth = taps.OutSize;
        int plane = outWidth * rowCount;
        byte[] planar = new byte[3 * plane];
        // Only the columns the taps read, each channel's as int32, with a vector's worth of zeros after them: an
        // output's last vector of taps may reach past the last column, where its weights are zero.
        int columns = taps.InputCount;
        int padded = columns + Vector<int>.Count;
        int[] rented = ArrayPool<int>.Shared.Rent(3 * padded);
        try
        {
            Span<int> buffer = rented.AsSpan(0, 3 * padded);
            buffer.Clear();
            Span<int> r = buffer[..padded], g = buffer.Slice(padded, padded), b = buffer.Slice(2 * padded, padded);
            for (int y = 0; y < rowCount; y++)
            {
                load(y, taps.FirstInput, r[..columns], g[..columns], b[..columns]);
                ConvolveRow(r, g, b, taps, planar.AsSpan(y * outWidth, outWidth), planar.AsSpan(plane + y * outWidth, outWidth), planar.AsSpan(2 * plane + y * outWidth, outWidth));
            }
        }
        finally
        {
            ArrayPool<int>.Shared.Return(rented);
        }

        return planar;
    }

    /// <summary>
    /// One row, all three channels, each span holding the row's inputs from <see cref="Taps.FirstInput"/> on: each
    /// output is the dot product of its taps with the inputs they cover.
    /// </summary>
    private static void ConvolveRow(
        ReadOnlySpan<int> r, ReadOnlySpan<int> g, ReadOnlySpan<int> b, Taps taps, Span<byte> outR, Span<byte> outG, Span<byte> outB)
    {
        // Loads without bounds checks in the inner loop: an output's inputs end by the row's end, its last vector
        // reaches at most a vector less one past them, into the zero padding of the rows (checked here once), and its
        // weights take a whole number of vectors.
        int lanes = Vector<int>.Count;
        int rowLength = taps.InputCount + lanes;
        if (r.Length < rowLength || g.Length < rowLength || b.Length < rowLength || outR.Length < taps.OutSize || outG.Length < taps.OutSize || outB.Length < taps.OutSize)
        {
            throw new ArgumentException("Rows shorter than the taps' input plus a vector, or outputs shorter than the taps' output.");
        }

        ref int red = ref MemoryMarshal.GetReference(r), green = ref MemoryMarshal.GetReference(g), blue = ref MemoryMarshal.GetReference(b);
        for (int i = 0; i < taps.OutSize; i++)
        {
            nuint first = (nuint)(taps.First[i] - taps.FirstInput), count = (nuint)taps.Count[i];
            ref int weights = ref MemoryMarshal.GetReference(taps.WeightsOf(i));
            Vector<int> sumR = default, sumG = default, sumB = default;
            for (nuint j = 0; j < count; j += (nuint)lanes)
            {
                var w = Vector.LoadUnsafe(ref weights, j);
                sumR += Vector.LoadUnsafe(ref red, first + j) * w;
                sumG += Vector.LoadUnsafe(ref green, first + j) * w;
                sumB += Vector.LoadUnsafe(ref blue, first + j) * w;
            }

            outR[i] = Clip8(Half + Vector.Sum(sumR));
            outG[i] = Clip8(Half + Vector.Sum(sumG));
            outB[i] = Clip8(Half + Vector.Sum(sumB));
        }
    }

    /// <summary>
    /// The vertical pass: output row i of each plane sums its taps' rows of <paramref name="planar"/> (rows
    /// <paramref name="width"/> wide, the first of them input row <paramref name="rowOffset"/>), a vector of columns
    /// at a time.
    /// </summary>
    private static byte[] ConvolveColumns(byte[] planar, int width, int rowOffset, Taps taps)
    {
        int inPlane = planar.Length / 3;
        int outHeight = taps.OutSize;
        int outPlane = width * outHeight;
        byte[] output = new byte[3 * outPlane];
        int lanes = Vector<byte>.Count;
        var half = new Vector<int>(Half);
        var max = new Vector<int>(byte.MaxValue);
        for (int c = 0; c < 3; c++)
        {
            ReadOnlySpan<byte> source = planar.AsSpan(c * inPlane, inPlane);
            for (int i = 0; i < outHeight; i++)
            {
                int first = taps.First[i] - rowOffset, count = taps.Count[i];
                ReadOnlySpan<int> weights = taps.WeightsOf(i);
                Span<byte> target = output.AsSpan(c * outPlane + i * width, width);
                int x = 0;
                if (Vector.IsHardwareAccelerated)
                {
                    for (; x <= width - lanes; x += lanes)
                    {
                        Vector<int> s0 = half, s1 = half, s2 = half, s3 = half;
                        for (int j = 0; j < count; j++)
                        {
                            Vector.Widen(new Vector<byte>(source[((first + j) * width + x)..]), out Vector<ushort> low, out Vector<ushort> high);
                            Vector.Widen(low, out Vector<uint> p0, out Vector<uint> p1);
                            Vector.Widen(high, out Vector<uint> p2, out Vector<uint> p3);
                            var w = new Vector<int>(weights[j]);
                            s0 += Vector.AsVectorInt32(p0) * w;
                            s1 += Vector.AsVectorInt32(p1) * w;
                            s2 += Vector.AsVectorInt32(p2) * w;
                            s3 += Vector.AsVectorInt32(p3) * w;
                        }

                        var bytes = Vector.Narrow(
                            Vector.Narrow(Vector.AsVectorUInt32(Clip8(s0, max)), Vector.AsVectorUInt32(Clip8(s1, max))),
                            Vector.Narrow(Vector.AsVectorUInt32(Clip8(s2, max)), Vector.AsVectorUInt32(Clip8(s3, max))));
                        bytes.CopyTo(target[x..]);
                    }
                }

                for (; x < width; x++)
                {
                    int sum = Half;
                    for (int j = 0; j < count; j++)
                    {
                        sum += source[(first + j) * width + x] * weights[j];
                    }

                    target[x] = Clip8(sum);
                }
            }
        }

        return output;
    }

    // Pillow's clip8: the sum's integer part, clamped to a byte (its lookup table covers -640..639 and clamps the same).
    private static byte Clip8(int sum) => (byte)Math.Clamp(sum >> PrecisionBits, 0, byte.MaxValue);

    private static Vector<int> Clip8(Vector<int> sum, Vector<int> max) =>
        Vector.Min(Vector.Max(Vector.ShiftRightArithmetic(sum, PrecisionBits), Vector<int>.Zero), max);

    /// <summary>
    /// One axis's filter taps, as Pillow's precompute_coeffs and normalize_coeffs_8bpc make them: output i reads
    /// <see cref="Count"/>[i] inputs from <see cref="First"/>[i] with fixed-point weights; each output's weights take a
    /// whole number of vectors, zero past its count.
    /// </summary>
    private sealed class Taps
    {
        private readonly int[] _weights;
        private readonly int _stride;

        private Taps(int outSize, int stride)
        {
            OutSize = outSize;
            First = new int[outSize];
            Count = new int[outSize];
            _stride = stride;
            _weights = new int[outSize * stride];
        }

        /// <summary>How many outputs these are: a window of the axis's outputs.</summary>
        public int OutSize { get; }

        public int[] First { get; }

        public int[] Count { get; }

        /// <summary>The first input any of these outputs reads (outputs read later inputs as they go).</summary>
        public int FirstInput => First[0];

        /// <summary>How many inputs, from <see cref="FirstInput"/>, these outputs read.</summary>
        public int InputCount => First[^1] + Count[^1] - First[0];

        public ReadOnlySpan<int> WeightsOf(int output) => _weights.AsSpan(output * _stride, _stride);

        /// <summary>The taps of outputs <paramref name="start"/> .. + <paramref name="count"/> of a resize from <paramref name="inSize"/> to <paramref name="outSize"/>.</summary>
        public static Taps Compute(int inSize, int outSize, PilResample filter, int start, int count)
        {
            // The arithmetic is precompute_coeffs' step by step, in double, so that every weight rounds as Pillow's does.
            double scale = (double)(float)inSize / outSize;
            double filterScale = scale < 1.0 ? 1.0 : scale;
            double support = Support(filter) * filterScale;
            int size = (int)Math.Ceiling(support) * 2 + 1;
            int stride = (size + Vector<int>.Count - 1) / Vector<int>.Count * Vector<int>.Count;
            var taps = new Taps(count, stride);
            double inverseScale = 1.0 / filterScale;
            Span<double> weights = size <= 256 ? stackalloc double[size] : new double[size];
            for (int i = 0; i < count; i++)
            {
                double center = (start + i + 0.5) * scale;
                int first = Math.Max((int)(center - support + 0.5), 0);
                int taken = Math.Min((int)(center + support + 0.5), inSize) - first;
                double total = 0.0;
                for (int x = 0; x < taken; x++)
                {
                    double w = Weight(filter, (x + first - center + 0.5) * inverseScale);
                    weights[x] = w;
                    total += w;
                }

                Span<int> fixedPoint = taps._weights.AsSpan(i * stride, stride);
                for (int x = 0; x < taken; x++)
                {
                    double w = total != 0.0 ? weights[x] / total : weights[x];
                    fixedPoint[x] = w < 0 ? (int)(-0.5 + w * (1 << PrecisionBits)) : (int)(0.5 + w * (1 << PrecisionBits));
                }

                taps.First[i] = first;
                taps.Count[i] = taken;
            }

            return taps;
        }

        private static double Support(PilResample filter) => filter switch
        {
            PilResample.Box => 0.5,
            PilResample.Bilinear or PilResample.Hamming => 1.0,
            PilResample.Bicubic => 2.0,
            PilResample.Lanczos => 3.0,
            _ => throw new ArgumentOutOfRangeException(nameof(filter), filter, "Not a convolution filter."),
        };

        private static double Weight(PilResample filter, double x) => filter switch
        {
            PilResample.Box => x > -0.5 && x <= 0.5 ? 1.0 : 0.0,
            PilResample.Bilinear => Math.Abs(x) < 1.0 ? 1.0 - Math.Abs(x) : 0.0,
            PilResample.Hamming => Hamming(Math.Abs(x)),
            PilResample.Bicubic => Bicubic(Math.Abs(x)),
            PilResample.Lanczos => -3.0 <= x && x < 3.0 ? Sinc(x) * Sinc(x / 3) : 0.0,
            _ => throw new ArgumentOutOfRangeException(nameof(filter), filter, "Not a convolution filter."),
        };

        // Keys' cubic convolution with a = -0.5, written as Pillow evaluates it.
        private static double Bicubic(double x)
        {
            const double A = -0.5;
            if (x < 1.0)
            {
                return ((A + 2.0) * x - (A + 3.0)) * x * x + 1;
            }

            return x < 2.0 ? (((x - 5) * x + 8) * x - 4) * A : 0.0;
        }

        // Pillow writes the window's constants as C floats (0.54f, 0.46f), which widen to double in the sum.
        private static double Hamming(double x)
        {
            if (x == 0.0)
            {
                return 1.0;
            }

            if (x >= 1.0)
            {
                return 0.0;
            }

            x *= Math.PI;
            return Math.Sin(x) / x * (0.54f + 0.46f * Math.Cos(x));
        }

        private static double Sinc(double x)
        {
            if (x == 0.0)
            {
                return 1.0;
            }

            x *= Math.PI;
            return Math.Sin(x) / x;
        }
    }
}
