using System.Runtime.InteropServices;
using Celer.Backends.Cuda;
using Celer.Models.Quantization;
using Celer.Models.Weights;

namespace Celer.Cli.Bench;

/// <summary>
/// FP8 weights for <c>celer bench gemm --fp8</c>: random E4M3 codes (normal values of either sign, no NaN) with random
/// per-channel or 128 × 128 block scales, in host memory that lives as long as this object. Kernel speed does not
/// depend on the values, but NaN codes would make the outputs meaningless and zeros would not exercise the arithmetic.
/// </summary>
internal sealed unsafe class RandomFp8Weights(int seed) : IDisposable
{
    private readonly Random _random = new(seed);
    private readonly List<nint> _buffers = [];

    public WeightTensor Get(string name, int rows, int columns, Fp8WeightScales kind)
    {
        long count = (long)rows * columns;
        byte* codes = (byte*)NativeMemory.AlignedAlloc((nuint)count, 64);
        _buffers.Add((nint)codes);
        _random.NextBytes(new Span<byte>(codes, checked((int)count)));
        for (long i = 0; i < count; i++)
        {
            // Exponent field 0 → 1 and 15 → 14 (any sign and mantissa): normal values in [2^-6, 240], no NaN.
            int exponent = (codes[i] >> 3) & 15;
            int clamped = Math.Clamp(exponent, 1, 14);
            codes[i] = (byte)((codes[i] & 0x87) | (clamped << 3));
        }

        (int blockRows, int blockColumns) = kind == Fp8WeightScales.PerBlock ? (CudaBackend.Fp8ScaleBlock, CudaBackend.Fp8ScaleBlock) : (1, columns);
        int grid = ((rows + blockRows - 1) / blockRows) * ((columns + blockColumns - 1) / blockColumns);
        float[] scales = [.. Enumerable.Range(0, grid).Select(_ => (float)(0.5 + _random.NextDouble()) / 2000)];
        return new WeightTensor(name, DType.F8E4M3, [rows, columns], (nint)codes, count)
        {
            Scales = new WeightScales(kind, scales, blockRows, blockColumns, rows, columns),
        };
    }

    public void Dispose()
    {
        foreach (nint buffer in _buffers)
        {
            NativeMemory.AlignedFree((void*)buffer);
        }

        _buffers.Clear();
    }
}
