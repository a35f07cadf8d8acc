using System.Text.Json.Nodes;

namespace Celer.Cli.Bench;

/// <summary>Summary statistics of a sample, with percentiles by linear interpolation (numpy's default).</summary>
internal static class LatencyStats
{
    public static double Percentile(IReadOnlyList<double> sorted, double percent)
    {
        if (sorted.Count == 0)
            return double.NaN;
        var rank = percent / 100 * (sorted.Count - 1);
        var lower = (int)Math.Floor(rank);
        var upper = (int)Math.Ceiling(rank);
        return sorted[lower] + (sorted[upper] - sorted[lower]) * (rank - lower);
    }

    public static double Mean(IReadOnlyList<double> values) => values.Count == 0 ? double.NaN : values.Sum() / values.Count;

    /// <summary>mean, median, p99 (and the other percentiles asked for), in milliseconds, named like vLLM's bench output.</summary>
    public static void AddSummary(JsonObject target, string name, IEnumerable<double> secondsValues, params double[] percentiles)
    {
        var sorted = secondsValues.Select(s => s * 1000).Order().ToList();
        target[$"mean_{name}_ms"] = Finite(Mean(sorted));
        target[$"median_{name}_ms"] = Finite(Percentile(sorted, 50));
        foreach (var p in percentiles.DefaultIfEmpty(99))
            target[$"p{p:0.##}_{name}_ms"] = Finite(Percentile(sorted, p));
    }

    private static double? Finite(double value) => double.IsFinite(value) ? value : null;
}
