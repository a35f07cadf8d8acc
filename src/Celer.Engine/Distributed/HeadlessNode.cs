using System.Diagnostics;

namespace Celer.Engine.Distributed;

/// <summary>
/// A node other than 0 of a multi-node tensor-parallel group (<c>celer serve --headless --nnodes N --node-rank n</c>, as
/// vLLM's headless nodes): it serves no API and runs no engine, only this node's share of the ranks, each a worker
/// process that connects to node 0 (<c>--master-addr:--master-port</c>) and is fed from there. It lasts as long as they
/// do: when node 0 closes the group (or dies) the workers exit, and so does the node; a worker that fails takes the
/// others down with it, since the group cannot go on without it.
/// </summary>
public static class HeadlessNode
{
    /// <summary>Runs this node's ranks until they exit; returns 0 when all ended cleanly, else the first failure's code.</summary>
    public static int Run(EngineArgs args, Action<string> log, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(args);
        ArgumentNullException.ThrowIfNull(log);
        args.Validate();
        if (args.NodeRank == 0)
        {
            throw new ArgumentException("--headless runs a node other than 0: node 0 serves the API and runs rank 0 (give --node-rank 1 or more).", nameof(args));
        }

        int first = args.NodeRank * args.RanksPerNode;
        var workers = new List<Process>();
        try
        {
            for (int rank = first; rank < first + args.RanksPerNode; rank++)
            {
                int r = rank;
                var worker = new Process { StartInfo = WorkerLaunch.StartInfo(TensorParallelWorker.RemoteArguments(args.MasterAddr, args.MasterPort, r)) };
                worker.OutputDataReceived += (_, line) => { if (line.Data is { } text) log($"rank {r}: {text}"); };
                worker.ErrorDataReceived += (_, line) => { if (line.Data is { } text) log($"rank {r}: {text}"); };
                workers.Add(worker);
                worker.Start();
                worker.BeginOutputReadLine();
                worker.BeginErrorReadLine();
            }

            log($"node {args.NodeRank} of {args.NNodes}: ranks {first} .. {first + args.RanksPerNode - 1} connecting to {args.MasterAddr}:{args.MasterPort}");
            using CancellationTokenRegistration stop = cancellationToken.Register(() => KillAll(workers));
            int exitCode = 0;
            var pending = workers.ToList();
            while (pending.Count > 0)
            {
                int index = Task.WaitAny([.. pending.Select(w => w.WaitForExitAsync(CancellationToken.None))], CancellationToken.None);
                Process ended = pending[index];
                pending.RemoveAt(index);
                if (ended.ExitCode != 0 && exitCode == 0)
                {
                    exitCode = ended.ExitCode;
                    KillAll(pending);   // the group cannot go on without it
                }
            }

            return cancellationToken.IsCancellationRequested ? 0 : exitCode;
        }
        finally
        {
            KillAll(workers);
            workers.ForEach(w => w.Dispose());
        }
    }

    private static void KillAll(IEnumerable<Process> workers)
    {
        foreach (Process worker in workers)
        {
            try
            {
                if (!worker.HasExited)
                {
                    worker.Kill(entireProcessTree: true);
                }
            }
            catch (InvalidOperationException)
            {
                // Not started, or gone meanwhile.
            }
        }
    }
}
