using BenchmarkDotNet.Configs;
using BenchmarkDotNet.Running;
using Celer.Benchmarks;

// Usage: dotnet run -c Release --project benchmarks/Celer.Benchmarks -- --filter '*' [--job short]
// All selected benchmarks run as one joined summary, so kernel GB/s read against the bandwidth baseline
// of the same run; the JSON summary goes to benchmarks/results/.
var config = DefaultConfig.Instance.AddColumn(ThroughputColumn.All);
string[] arguments = args.Contains("--join") ? args : [.. args, "--join"];
var summaries = BenchmarkSwitcher.FromAssembly(typeof(ThroughputColumn).Assembly).Run(arguments, config).ToArray();
if (summaries.Any(s => s.BenchmarksCases.Length > 0))
{
    Console.WriteLine($"Results: {ResultsWriter.Write(summaries)}");
}
