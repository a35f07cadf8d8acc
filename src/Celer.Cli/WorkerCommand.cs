using System.CommandLine;
using Celer.Engine.Distributed;

namespace Celer.Cli;

/// <summary>
/// <c>celer worker --rank R (--rendezvous Q | --master-addr A --master-port P)</c>: one tensor-parallel rank other than 0,
/// started by Celer itself, never by hand: by the serving process for the ranks of its own node (fed through its
/// shared-memory queue <c>Q</c>), or by <c>celer serve --headless</c> for another node's (fed over TCP from node 0 at
/// <c>A:P</c>). Everything it needs arrives from rank 0 (<see cref="TensorParallelWorker"/>). Hidden from the help.
/// </summary>
internal static class WorkerCommand
{
    public static Command Create()
    {
        var rendezvous = new Option<string?>("--rendezvous") { Description = "Rank 0's shared-memory queue (a worker on node 0)." };
        var masterAddr = new Option<string?>("--master-addr") { Description = "Node 0's address (a worker on another node)." };
        var masterPort = new Option<int?>("--master-port") { Description = "Node 0's port (a worker on another node)." };
        var rank = new Option<int>("--rank") { Description = "This worker's rank, 1 .. tensor-parallel size − 1.", Required = true };
        var command = new Command(TensorParallelWorker.Command, "A tensor-parallel worker process (started by `celer serve --tensor-parallel-size N`).") { Hidden = true };
        command.Options.Add(rendezvous);
        command.Options.Add(masterAddr);
        command.Options.Add(masterPort);
        command.Options.Add(rank);
        command.SetAction(result => (result.GetValue(rendezvous), result.GetValue(masterAddr), result.GetValue(masterPort)) switch
        {
            ({ } queue, null, null) => TensorParallelWorker.Run(queue, result.GetValue(rank), Console.Error),
            (null, { } host, { } port) => TensorParallelWorker.RunRemote(host, port, result.GetValue(rank), Console.Error),
            _ => Fail("celer worker takes --rendezvous, or --master-addr with --master-port."),
        });
        return command;
    }

    private static int Fail(string message)
    {
        Console.Error.WriteLine(message);
        return 2;
    }
}
