namespace Celer.Benchmarks;

/// <summary>Work of one benchmark invocation: floating-point operations and bytes that must move through memory.</summary>
public readonly record struct Workload(double Flops, double Bytes);

/// <summary>
/// A benchmark class whose invocation work follows from its [Params] alone, so the throughput columns and
/// the JSON summary can turn a measured time into GFLOP/s and GB/s without running its setup.
/// </summary>
public interface IHasWorkload
{
    Workload Workload { get; }
}
