using System.CommandLine;
using Celer.Cli;
using Celer.Cli.Bench;

var root = new RootCommand("Celer: LLM inference and serving (vLLM-compatible CLI).");
root.Subcommands.Add(ServeCommand.Create());
root.Subcommands.Add(GenerateCommand.Create());
root.Subcommands.Add(ChatCommand.Create());
root.Subcommands.Add(BenchCommand.Create());
return await root.Parse(args).InvokeAsync();
