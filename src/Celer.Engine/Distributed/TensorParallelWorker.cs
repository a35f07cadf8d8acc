using System.Diagnostics;
using System.Globalization;
using Celer.Engine.Execution;

namespace Celer.Engine.Distributed;

/// <summary>
/// A tensor-parallel rank other than 0, in a process of its own (<c>celer worker</c>): started by rank 0's
/// <see cref="WorkerProcesses"/> on node 0 and fed through its shared-memory broadcast queue, or started by
/// <c>celer serve --headless</c> on another node (<see cref="HeadlessNode"/>) and fed over TCP from node 0's
/// <c>--master-addr:--master-port</c>. It reads the plan, loads its shard of the model, sizes its KV cache as rank 0
/// says, and then runs every call rank 0's model makes, in order, until rank 0 closes the channel. Its collectives pair
/// it with the other ranks inside each call; it returns nothing to rank 0, which holds the gathered logits and samples
/// (vLLM's workers other than the driver return nothing either).
/// </summary>
public static class TensorParallelWorker
{
    /// <summary>The command word a host program passes on to the worker: <c>celer worker …</c>.</summary>
    public const string Command = "worker";

    /// <summary>A local worker's line on its standard output once its shard is loaded and its KV cache allocated.</summary>
    internal const string ReadyLine = "celer-worker: ready";

    /// <summary>The arguments of a worker on node 0, fed through rank 0's queue <paramref name="rendezvous"/>.</summary>
    internal static string[] Arguments(string rendezvous, int rank) => [Command, "--rendezvous", rendezvous, "--rank", Text(rank)];

    /// <summary>The arguments of a worker on another node, fed over TCP from node 0.</summary>
    internal static string[] RemoteArguments(string masterAddr, int masterPort, int rank) =>
        [Command, "--master-addr", masterAddr, "--master-port", Text(masterPort), "--rank", Text(rank)];

    /// <summary>
    /// For a host program without a command line of its own for it (a test executable started again as a worker): when
    /// <paramref name="args"/> are a worker's (<see cref="Arguments"/> or <see cref="RemoteArguments"/>), runs it and
    /// returns its exit code; else null.
    /// </summary>
    public static int? RunIfWorker(IReadOnlyList<string> args) => args switch
    {
        [Command, "--rendezvous", string rendezvous, "--rank", string rank] when Number(rank) is int r => Run(rendezvous, r, Console.Error),
        [Command, "--master-addr", string host, "--master-port", string port, "--rank", string rank] when Number(port) is int p && Number(rank) is int r
            => RunRemote(host, p, r, Console.Error),
        _ => null,
    };

    /// <summary>Serves as rank <paramref name="rank"/> of the group whose rank 0 writes queue <paramref name="rendezvous"/>
    /// on this host; returns the process's exit code: 0 once rank 0 closed the queue, 1 after a failure, which is written
    /// to <paramref name="log"/>.</summary>
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
            Serve(timeout => queue.Dequeue(timeout), rank, () =>
            {
                Console.Out.WriteLine(ReadyLine);
                Console.Out.Flush();
            });
            return 0;
        }
        catch (Exception e)
        {
            log.WriteLine($"tensor-parallel rank {rank} failed: {e}");
            return 1;
        }
    }

    /// <summary>Serves as rank <paramref name="rank"/> of the group whose rank 0 listens at
    /// <paramref name="masterAddr"/>:<paramref name="masterPort"/> on another node; exit codes as <see cref="Run"/>'s.</summary>
    public static int RunRemote(string masterAddr, int masterPort, int rank, TextWriter log)
    {
        ArgumentNullException.ThrowIfNull(log);
        TcpBroadcastClient? channel = null;
        try
        {
            // Node 0 may still be starting: the client retries within the load timeout.
            channel = TcpBroadcastClient.Connect(masterAddr, masterPort, rank, WorkerProcesses.LoadTimeout);
            Serve(timeout => channel.Dequeue(timeout), rank, () => channel.Reply(WorkerProcesses.ReadyReply));
            return 0;
        }
        catch (Exception e)
        {
            log.WriteLine($"tensor-parallel rank {rank} failed: {e}");
            try
            {
                // Node 0 names the failure in its own error; it hears of the connection's end anyway.
                channel?.Reply($"rank {rank} failed: {e.Message}");
            }
            catch (Exception replyFailed) when (replyFailed is IOException or ObjectDisposedException or InvalidOperationException)
            {
            }

            return 1;
        }
        finally
        {
            channel?.Dispose();
        }
    }

    /// <summary>The worker's life once its channel to rank 0 is open: plan, shard, KV cache, then every call until the channel closes.</summary>
    private static void Serve(Func<TimeSpan, byte[]> dequeue, int rank, Action ready)
    {
        WorkerPlan plan = WorkerMessages.DecodePlan(dequeue(WorkerProcesses.LoadTimeout));
        using ModelLoader.WorkerRank shard = ModelLoader.LoadWorkerRank(plan, rank);
        shard.AllocateKvCache(WorkerMessages.DecodeKvCache(dequeue(WorkerProcesses.LoadTimeout)));
        ready();
        while (true)
        {
            byte[] message;
            try
            {
                // An idle server sends nothing for as long as it is idle; rank 0's death still ends the wait.
                message = dequeue(Timeout.InfiniteTimeSpan);
            }
            catch (BroadcastQueueClosedException)
            {
                return;
            }

            WorkerMessages.DecodeCall(message).ApplyTo(shard.Model);
        }
    }

    private static string Text(int value) => value.ToString(CultureInfo.InvariantCulture);

    private static int? Number(string text) => int.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out int value) ? value : null;
}
