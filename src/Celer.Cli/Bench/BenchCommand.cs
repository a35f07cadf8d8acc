using System.CommandLine;

namespace Celer.Cli.Bench;

/// <summary><c>celer bench latency|throughput|serve</c>, mirroring <c>vllm bench</c>, and <c>multi-turn</c> for the host KV tier.</summary>
internal static class BenchCommand
{
    public static Command Create()
    {
        var command = new Command("bench", "Benchmarks: offline latency and throughput, and online serving.");
        command.Subcommands.Add(OfflineBenchmarks.Latency());
        command.Subcommands.Add(OfflineBenchmarks.Throughput());
        command.Subcommands.Add(AttentionBenchmark.Create());
        command.Subcommands.Add(GemmBenchmark.Create());
        command.Subcommands.Add(ServeBenchmark.Create());
        command.Subcommands.Add(MultiTurnBenchmark.Create());
        command.Subcommands.Add(RouterBenchmark.Create());
        return command;
    }
}
