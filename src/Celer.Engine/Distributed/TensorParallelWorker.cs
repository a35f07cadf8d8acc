using System.Diagnostics;
using Celer.Engine.Execution;
using Celer.Models.Architectures;

namespace Celer.Engine.Distributed;

/// <summary>
/// A tensor-parallel rank other than 0, in a process of its own (<c>celer worker</c>, started by rank 0's
/// <see cref="WorkerProcesses"/>): it reads the plan from rank 0's broadcast queue, loads its shard of the model, sizes its
/// KV cache as rank 0 says, and then runs every call rank 0's model makes, in order, until the queue closes. Its
/// collectives pair it with the other ranks inside each call; it returns nothing to rank 0, which holds the gathered
/// logits and samples (vLLM's workers other than the driver return nothing either).
/// </summary>
public static class TensorParallelWorker
{
    /// <summary>The command word a host program passes on to <see cref="Run"/>: <c>celer worker --rendezvous Q --rank R</c>.</summary>
    public const string Command = "worker";

    /// <summary>A worker's line on its standard output once its shard is loaded and its KV cache allocated.</summary>
    internal const string ReadyLine = "celer-worker: ready";

    /// <summary>The arguments rank 0 starts a worker with.</summary>
    internal static string[] Arguments(string rendezvous, int rank) => [Command, "--rendezvous", rendezvous, "--rank", rank.ToString(System.Globalization.CultureInfo.InvariantCulture)];

    /// <summary>
    /// For a host program without a command line of its own for it (a test executable started again as a worker): when
    /// <paramref name="args"/> are a worker's (<see cref="Arguments"/>), runs it and returns its exit code; else null.
    /// </summary>
    public static int? RunIfWorker(IReadOnlyList<string> args) =>
        args is [Command, "--rendezvous", string rendezvous, "--rank", string rank] && int.TryParse(rank, System.Globalization.CultureInfo.InvariantCulture, out int r)
            ? Run(rendezvous, r, Console.Error)
            : null;

    /// <summary>Serves as rank <paramref name="rank"/> of the group whose rank 0 writes queue <paramref name="rendezvous"/>;
    /// returns the process's exit code: 0 once rank 0 closed the queue, 1 after a failure, which is written to <paramref name="log"/>.</summary>
    public static int Run(string rendezvous, int rank, TextWriter log)
    {
        ArgumentNullException.ThrowIfNull(log);
        try
        {
            // Rank 0 wrote the queue: its process id is in the queue's name.
            int rankZero = StaleBroadcastFiles.CreatorProcessId(rendezvous, ShmRingBuffer.NamePrefix)
                ?? throw new ArgumentException($"'{rendezvous}' is not a broadcast queue's name.", nameof(rendezvous));
            using Process parent = Process.GetProcessById(rankZero);
            using ShmBroadcastReader queue = ShmBroadcastReader.Open(rendezvous, rank - 1, () => !parent.HasExited);
            WorkerPlan plan = WorkerMessages.DecodePlan(queue.Dequeue(WorkerProcesses.LoadTimeout));
            using ModelLoader.WorkerRank shard = ModelLoader.LoadWorkerRank(plan, rank);
            shard.AllocateKvCache(WorkerMessages.DecodeKvCache(queue.Dequeue(WorkerProcesses.LoadTimeout)));
            Console.Out.WriteLine(ReadyLine);
            Console.Out.Flush();
            while (true)
            {
                byte[] message;
                try
                {
                    // An idle server sends nothing for as long as it is idle; rank 0's death still ends the wait.
                    message = queue.Dequeue(Timeout.InfiniteTimeSpan);
                }
                catch (BroadcastQueueClosedException)
                {
                    return 0;
                }

                WorkerMessages.DecodeCall(message).ApplyTo(shard.Model);
            }
        }
        catch (Exception e)
        {
            log.WriteLine($"tensor-parallel rank {rank} failed: {e}");
            return 1;
        }
    }
}
