using BenchmarkDotNet.Configs;
using BenchmarkDotNet.Running;
using Celer.Benchmarks;

// Usage: dotnet run -c Release --project benchmarks/Celer.Benchmarks -- --filter '*' [--job short]
//    or: dotnet run -c Release --project benchmarks/Celer.Benchmarks -- grammar [tokenizer ...]  (structured outputs' mask cost)
// All selected benchmarks run as one joined summary, so kernel GB/s read against the bandwidth baseline
// of the same run; the JSON summary goes to benchmarks/results/.
if (args is ["grammar", .. var names])
{
    Console.WriteLine($"Results: {GrammarMaskBenchmark.Run(names.Length > 0 ? names : ["llama3", "qwen3"], walks: 4, maxTokens: 64)}");
    return;
}

var config = DefaultConfig.Instance.AddColumn(ThroughputColumn.All);
string[] arguments = args.Contains("--join") ? args : [.. args, "--join"];
var summaries = BenchmarkSwitcher.FromAssembly(typeof(ThroughputColumn).Assembly).Run(arguments, config).ToArray();
if (summaries.Any(s => s.BenchmarksCases.Length > 0))
{
    Console.WriteLine($"Results: {ResultsWriter.Write(summaries)}");
}
