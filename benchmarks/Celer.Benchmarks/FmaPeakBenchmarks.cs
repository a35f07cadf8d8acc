using System.Runtime.Intrinsics;
using BenchmarkDotNet.Attributes;

namespace Celer.Benchmarks;

/// <summary>
/// The machine's fp32 multiply-add ceiling, measured in the same run as the matmuls so their GFLOP/s read as a
/// fraction of it (as <see cref="MemoryBandwidthBenchmarks"/> is for bytes): twelve independent chains of widest-vector
/// FMAs per thread, enough to cover the FMA latency on every port, on one core and on every core. The CPU backend
/// computes in fp32 from bf16 weights (.NET 10 exposes no bf16 dot-product instruction), so this bounds its prefill.
/// </summary>
public class FmaPeakBenchmarks : IHasWorkload
{
    private const int Chains = 12;
    private const long Iterations = 2_000_000;

    private readonly int _threads = Environment.ProcessorCount;

    /// <summary>Both benchmarks do the same work: one chain per core, run one after another or side by side.</summary>
    public Workload Workload => new(_threads * Iterations * Chains * Vector512<float>.Count * 2.0, 0);

    [Benchmark]
    public float OneCore()
    {
        float sum = 0;
        for (int t = 0; t < _threads; t++)
        {
            sum += Chain();
        }

        return sum;
    }

    [Benchmark]
    public float AllCores()
    {
        var results = new float[_threads];
        Parallel.For(0, _threads, new ParallelOptions { MaxDegreeOfParallelism = _threads }, t => results[t] = Chain());
        return results.Sum();
    }

    private static float Chain()
    {
        // Vector512 runs as two 256-bit halves where the hardware has no 512-bit units; either way it is the widest FMA .NET emits.
        Vector512<float> a = Vector512.Create(1.0000001f), b = Vector512.Create(0.9999999f);
        Vector512<float> c0 = default, c1 = default, c2 = default, c3 = default, c4 = default, c5 = default;
        Vector512<float> c6 = default, c7 = default, c8 = default, c9 = default, c10 = default, c11 = default;
        for (long i = 0; i < Iterations; i++)
        {
            c0 = Vector512.FusedMultiplyAdd(a, b, c0);
            c1 = Vector512.FusedMultiplyAdd(a, b, c1);
            c2 = Vector512.FusedMultiplyAdd(a, b, c2);
            c3 = Vector512.FusedMultiplyAdd(a, b, c3);
            c4 = Vector512.FusedMultiplyAdd(a, b, c4);
            c5 = Vector512.FusedMultiplyAdd(a, b, c5);
            c6 = Vector512.FusedMultiplyAdd(a, b, c6);
            c7 = Vector512.FusedMultiplyAdd(a, b, c7);
            c8 = Vector512.FusedMultiplyAdd(a, b, c8);
            c9 = Vector512.FusedMultiplyAdd(a, b, c9);
            c10 = Vector512.FusedMultiplyAdd(a, b, c10);
            c11 = Vector512.FusedMultiplyAdd(a, b, c11);
        }

        return Vector512.Sum(c0 + c1 + c2 + c3 + c4 + c5 + c6 + c7 + c8 + c9 + c10 + c11);
    }
}
