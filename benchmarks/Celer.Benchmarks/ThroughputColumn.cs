using System.Globalization;
using BenchmarkDotNet.Columns;
using BenchmarkDotNet.Reports;
using BenchmarkDotNet.Running;

namespace Celer.Benchmarks;

/// <summary>
/// GFLOP/s, GB/s and the fraction of the measured memory bandwidth, computed from a case's mean time and its
/// <see cref="IHasWorkload.Workload"/>. The bandwidth is the best <see cref="MemoryBandwidthBenchmarks"/> result in
/// the same summary (run with <c>--join</c>, which Program adds).
/// </summary>
internal sealed class ThroughputColumn(ThroughputColumn.Kind kind) : IColumn
{
    public enum Kind
    {
        GigaFlops,
        GigaBytes,
        FractionOfBandwidth,
    }

    public static readonly IColumn[] All = [new ThroughputColumn(Kind.GigaFlops), new ThroughputColumn(Kind.GigaBytes), new ThroughputColumn(Kind.FractionOfBandwidth)];

    public string Id => $"{nameof(ThroughputColumn)}.{kind}";

    public string ColumnName => kind switch
    {
        Kind.GigaFlops => "GFLOP/s",
        Kind.GigaBytes => "GB/s",
        _ => "of bandwidth",
    };

    public bool AlwaysShow => true;

    public ColumnCategory Category => ColumnCategory.Custom;

    public int PriorityInCategory => (int)kind;

    public bool IsNumeric => true;

    public UnitType UnitType => UnitType.Dimensionless;

    public string Legend => kind switch
    {
        Kind.GigaFlops => "Floating-point operations per second, 1e9",
        Kind.GigaBytes => "Bytes the kernel must move through memory per second, 1e9",
        _ => "GB/s as a fraction of the best memory-bandwidth baseline of this run",
    };

    public bool IsAvailable(Summary summary) => true;

    public bool IsDefault(Summary summary, BenchmarkCase benchmarkCase) => false;

    public string GetValue(Summary summary, BenchmarkCase benchmarkCase) => GetValue(summary, benchmarkCase, SummaryStyle.Default);

    public string GetValue(Summary summary, BenchmarkCase benchmarkCase, SummaryStyle style)
    {
        Throughput? throughput = Throughput.Of(summary, benchmarkCase);
        if (throughput is null)
        {
            return "-";
        }

        double? value = kind switch
        {
            Kind.GigaFlops => throughput.Value.GigaFlops,
            Kind.GigaBytes => throughput.Value.GigaBytes,
            _ => throughput.Value.GigaBytes / Throughput.Bandwidth(summary),
        };
        return value is double v && double.IsFinite(v) ? v.ToString(kind == Kind.FractionOfBandwidth ? "P0" : "F1", CultureInfo.InvariantCulture) : "-";
    }
}

/// <summary>A case's measured rates.</summary>
internal readonly record struct Throughput(double MeanNanoseconds, double GigaFlops, double GigaBytes)
{
    public static Throughput? Of(Summary summary, BenchmarkCase benchmarkCase)
    {
        double? mean = summary[benchmarkCase]?.ResultStatistics?.Mean;
        if (mean is not double nanoseconds || WorkloadOf(benchmarkCase) is not Workload work)
        {
            return null;
        }

        return new Throughput(nanoseconds, work.Flops / nanoseconds, work.Bytes / nanoseconds);
    }

    /// <summary>The best memory-bandwidth baseline in the summary, GB/s (NaN when it was not run).</summary>
    public static double Bandwidth(Summary summary) => summary.BenchmarksCases
        .Where(c => c.Descriptor.Type == typeof(MemoryBandwidthBenchmarks))
        .Select(c => Of(summary, c)?.GigaBytes ?? double.NaN)
        .Where(double.IsFinite)
        .DefaultIfEmpty(double.NaN)
        .Max();

    /// <summary>Builds the benchmark object with the case's parameters and asks it for its work; no setup runs.</summary>
    private static Workload? WorkloadOf(BenchmarkCase benchmarkCase)
    {
        if (Activator.CreateInstance(benchmarkCase.Descriptor.Type) is not IHasWorkload benchmark)
        {
            return null;
        }

        foreach (var parameter in benchmarkCase.Parameters.Items)
        {
            benchmarkCase.Descriptor.Type.GetProperty(parameter.Name)?.SetValue(benchmark, parameter.Value);
        }

        return benchmark.Workload;
    }
}
