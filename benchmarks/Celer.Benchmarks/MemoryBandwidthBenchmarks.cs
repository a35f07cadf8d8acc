using System.Numerics.Tensors;
using BenchmarkDotNet.Attributes;

namespace Celer.Benchmarks;

/// <summary>
/// The machine's read bandwidth, measured in the same run as the kernels so their GB/s read as a fraction
/// of it: a sum over 256 MiB (far beyond any cache), on one core and split over all cores.
/// </summary>
public unsafe class MemoryBandwidthBenchmarks : IHasWorkload
{
    private const long Bytes = 256L << 20;

    private NativeBuffer? _data;

    public Workload Workload => new(Bytes / sizeof(float), Bytes);

    [GlobalSetup]
    public void Setup() => _data = new NativeBuffer(Bytes, new Random(3));

    [Benchmark]
    public float SumOneCore() => TensorPrimitives.Sum(new ReadOnlySpan<float>(_data!.Pointer, (int)(Bytes / sizeof(float))));

    [Benchmark]
    public float SumAllCores()
    {
        int chunks = Environment.ProcessorCount;
        long count = Bytes / sizeof(float);
        float* data = _data!.Floats;
        var partial = new float[chunks];
        Parallel.For(0, chunks, c =>
        {
            long start = count * c / chunks;
            long end = count * (c + 1) / chunks;
            partial[c] = TensorPrimitives.Sum(new ReadOnlySpan<float>(data + start, (int)(end - start)));
        });
        return partial.Sum();
    }

    [GlobalCleanup]
    public void Cleanup() => _data?.Dispose();
}
