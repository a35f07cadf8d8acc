using System.CommandLine;
using Celer.Cli.Bench;

namespace Celer.Cli;

/// <summary>
/// The <c>celer</c> command tree. Commands write their results to the invocation's
/// <see cref="InvocationConfiguration.Output"/> (the console unless the caller says otherwise), so the
/// tree can also run in-process, as the server tests run <c>celer generate</c> and <c>celer bench</c>.
/// </summary>
internal static class CelerCommandLine
{
    public static RootCommand CreateRoot()
    {
        var root = new RootCommand("Celer: LLM inference and serving (vLLM-compatible CLI).");
        root.Subcommands.Add(ServeCommand.Create());
        root.Subcommands.Add(GenerateCommand.Create());
        root.Subcommands.Add(ChatCommand.Create());
        root.Subcommands.Add(BenchCommand.Create());
        root.Subcommands.Add(QuantizeCommand.Create());
        root.Subcommands.Add(RouterCommand.Create());
        root.Subcommands.Add(WorkerCommand.Create());
        return root;
    }
}
