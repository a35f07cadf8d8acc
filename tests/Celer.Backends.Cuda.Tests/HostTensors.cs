using System.Runtime.InteropServices;
using Celer.Models.Backend;
using Celer.Models.Quantization;
using Celer.Models.Weights;

namespace Celer.Backends.Cuda.Tests;

/// <summary>
/// Random inputs in native memory, handed to both backends through <see cref="IModelBackend.LoadWeight"/> (the one
/// way to put given values into a backend's tensor), and read back with <see cref="IModelBackend.CopyToHost"/>.
/// </summary>
internal sealed unsafe class HostTensors : IDisposable
{
    private readonly List<nint> _memory = [];
    private readonly Random _random;

    public HostTensors(int seed) => _random = new Random(seed);

    /// <summary>Values uniform in [-scale, scale] (never zeros), stored as <paramref name="dtype"/>.</summary>
    public WeightTensor Random(string name, DType dtype, float scale, params int[] shape)
    {
        long count = shape.Aggregate(1L, (a, b) => a * b);
        void* p = (void*)Allocate(count * dtype.ByteSize());
        for (long i = 0; i < count; i++)
        {
            float v = (float)((_random.NextDouble() * 2 - 1) * scale);
            switch (dtype)
            {
                case DType.F32: ((float*)p)[i] = v; break;
                case DType.F16: ((Half*)p)[i] = (Half)v; break;
                case DType.BF16: ((ushort*)p)[i] = HalfConversions.FloatToBf16(v); break;
            }
        }

        return new WeightTensor(name, dtype, shape, (nint)p, count * dtype.ByteSize());
    }

    /// <summary>
    /// An MXFP4 weight of <paramref name="rows"/> × <paramref name="columns"/> values: random code bytes, scale exponents
    /// 2^-6 … 2^-2 (values up to 0.375), and the bf16 values they stand for (<see cref="Models.Quantization.Mxfp4.DecodeRowToBf16"/>).
    /// </summary>
    public (WeightTensor Blocks, WeightTensor Scales, WeightTensor Values) Mxfp4(string name, int rows, int columns)
    {
        int groups = columns / Models.Quantization.Mxfp4.BlockSize;
        byte* codes = (byte*)Allocate((long)rows * columns / 2), scales = (byte*)Allocate((long)rows * groups);
        ushort* values = (ushort*)Allocate((long)rows * columns * sizeof(ushort));
        for (long i = 0; i < (long)rows * columns / 2; i++)
        {
            codes[i] = (byte)_random.Next(256);
        }

        for (long i = 0; i < (long)rows * groups; i++)
        {
            scales[i] = (byte)(121 + _random.Next(5));
        }

        for (int r = 0; r < rows; r++)
        {
            Models.Quantization.Mxfp4.DecodeRowToBf16(codes + ((long)r * columns / 2), scales + ((long)r * groups), columns, values + ((long)r * columns));
        }

        return (new WeightTensor(name + "_blocks", DType.U8, [rows, columns / 2], (nint)codes, (long)rows * columns / 2),
            new WeightTensor(name + "_scales", DType.U8, [rows, groups], (nint)scales, (long)rows * groups),
            new WeightTensor(name, DType.BF16, [rows, columns], (nint)values, (long)rows * columns * sizeof(ushort)));
    }

    /// <summary>Random E4M3 codes (never NaN, never zero) with random positive scales of the scheme.</summary>
    public WeightTensor Fp8(string name, Fp8WeightScales kind, int rows, int columns)
    {
        byte* codes = (byte*)Allocate((long)rows * columns);
        for (long i = 0; i < (long)rows * columns; i++)
        {
            // Exponent fields 1..14 of either sign, any mantissa: normal values in [2^-6, 240], no NaN (0x7f/0xff).
            codes[i] = (byte)((_random.Next(2) << 7) | (_random.Next(1, 15) << 3) | _random.Next(8));
        }

        (int blockRows, int blockColumns) = kind switch
        {
            Fp8WeightScales.PerTensor => (rows, columns),
            Fp8WeightScales.PerChannel => (1, columns),
            _ => (CudaBackend.Fp8ScaleBlock, CudaBackend.Fp8ScaleBlock),
        };
        int grid = ((rows + blockRows - 1) / blockRows) * ((columns + blockColumns - 1) / blockColumns);
        float[] scales = [.. Enumerable.Range(0, grid).Select(_ => (float)(0.5 + _random.NextDouble()) / 2000)];
        return new WeightTensor(name, DType.F8E4M3, [rows, columns], (nint)codes, (long)rows * columns)
        {
            Scales = new WeightScales(kind, scales, blockRows, blockColumns, rows, columns),
        };
    }

    /// <summary>What the CPU computes with: code × scale in fp32, as <see cref="Fp8WeightSource"/> dequantizes.</summary>
    public WeightTensor Dequantized(WeightTensor q)
    {
        int rows = q.Shape[0], columns = q.Shape[1];
        float* values = (float*)Allocate((long)rows * columns * sizeof(float));
        q.Scales!.Dequantize((byte*)q.Data, values);
        return new WeightTensor(q.Name, DType.F32, [rows, columns], (nint)values, (long)rows * columns * sizeof(float));
    }

    /// <summary>Native memory, 64-byte aligned (at least one byte), freed with the others on <see cref="Dispose"/>.</summary>
    private nint Allocate(long bytes)
    {
        nint p = (nint)NativeMemory.AlignedAlloc((nuint)Math.Max(1, bytes), 64);
        _memory.Add(p);
        return p;
    }

    /// <summary>The given fp32 values as a tensor.</summary>
    public WeightTensor FromValues(string name, float[] values, params int[] shape)
    {
        void* p = (void*)Allocate((long)values.Length * sizeof(float));
        values.CopyTo(new Span<float>(p, values.Length));
        return new WeightTensor(name, DType.F32, shape, (nint)p, values.Length * (long)sizeof(float));
    }

    /// <summary>Values of magnitude in [0.25, 1) with random signs, representable in <paramref name="dtype"/>: sums of a few are exact in fp32.</summary>
    public static float[] SignedValues(Random random, int count, DType dtype) =>
        [.. Enumerable.Range(0, count).Select(_ => Rounded((float)((0.25 + (0.75 * random.NextDouble())) * (random.Next(2) == 0 ? -1 : 1)), dtype))];

    /// <summary><paramref name="value"/> rounded to <paramref name="dtype"/> (to nearest even) and back.</summary>
    public static float Rounded(float value, DType dtype) => dtype switch
    {
        DType.BF16 => HalfConversions.Bf16ToFloat(HalfConversions.FloatToBf16(value)),
        DType.F16 => HalfConversions.HalfToFloat(HalfConversions.FloatToHalf(value)),
        _ => value,
    };

    public static float[] Read(IModelBackend backend, Tensor t, int rows)
    {
        var values = new float[rows * t.Columns];
        backend.CopyToHost(t, rows, values);
        return values;
    }

    /// <summary>‖a − b‖ / ‖b‖, the norm-relative error of <paramref name="a"/> against reference <paramref name="b"/>.</summary>
    public static double RelativeError(float[] a, float[] b)
    {
        Assert.Equal(b.Length, a.Length);
        double diff = 0, norm = 0;
        for (int i = 0; i < a.Length; i++)
        {
            Assert.False(float.IsNaN(a[i]), $"NaN at {i}");
            diff += (a[i] - (double)b[i]) * (a[i] - (double)b[i]);
            norm += (double)b[i] * b[i];
        }

        return Math.Sqrt(diff / Math.Max(norm, 1e-30));
    }

    public void Dispose()
    {
        foreach (nint p in _memory)
        {
            NativeMemory.AlignedFree((void*)p);
        }
    }
}
