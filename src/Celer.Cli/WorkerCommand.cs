using System.CommandLine;
using Celer.Engine.Distributed;

namespace Celer.Cli;

/// <summary>
/// <c>celer worker --rendezvous Q --rank R</c>: one tensor-parallel rank other than 0, started by the serving process
/// itself (<c>--tensor-parallel-size</c>), never by hand: everything it needs arrives through rank 0's queue
/// <c>Q</c> (<see cref="TensorParallelWorker"/>). Hidden from the help.
/// </summary>
internal static class WorkerCommand
{
    public static Command Create()
    {
        var rendezvous = new Option<string>("--rendezvous") { Description = "Rank 0's broadcast queue.", Required = true };
        var rank = new Option<int>("--rank") { Description = "This worker's rank, 1 .. tensor-parallel size − 1.", Required = true };
        var command = new Command(TensorParallelWorker.Command, "A tensor-parallel worker process (started by `celer serve --tensor-parallel-size N`).") { Hidden = true };
        command.Options.Add(rendezvous);
        command.Options.Add(rank);
        command.SetAction(result => TensorParallelWorker.Run(result.GetValue(rendezvous)!, result.GetValue(rank), Console.Error));
        return command;
    }
}
