using System.Buffers;
using System.Collections.Concurrent;
using System.Diagnostics;
using System.Net;
using Celer.Models.Architectures;
using Celer.Models.Weights;

namespace Celer.Engine.Distributed;

/// <summary>
/// Rank 0's side of a tensor-parallel group whose other ranks are worker processes (vLLM's multiprocessing executor,
/// <c>--distributed-executor-backend mp</c>). The ranks of this node are started here, this program again with the
/// worker's arguments (<see cref="TensorParallelWorker"/>), and fed through one shared-memory broadcast queue; the ranks of
/// the other nodes (<c>--nnodes</c>: started there by <c>celer serve --headless</c>) connect to node 0's
/// <c>--master-addr:--master-port</c> and are fed the same messages over TCP. The messages are the plan, the KV cache's
/// size, then each call of rank 0's model (<see cref="PeerCall"/>). A worker that exits or whose connection drops, at
/// any time, is a failure of the engine: the wait that meets it (a collective, the queue) throws, and
/// <see cref="WatchFailures"/> hears of it at once, so an idle engine turns dead too instead of failing the next request only.
/// </summary>
internal sealed class WorkerProcesses : ITensorParallelPeers
{
    /// <summary>How long loading a shard may take, and a worker may take to read a step while it is alive.</summary>
    public static readonly TimeSpan LoadTimeout = TimeSpan.FromMinutes(30);

    /// <summary>What a remote worker replies once its shard is loaded and its KV cache allocated; an error text otherwise.</summary>
    internal const string ReadyReply = "ready";

    // A decode step's batch is a few KB; a long prompt's chunk ~100 KB. 16 chunks of 1 MiB hold a few steps ahead.
    private const int ChunkBytes = 1 << 20, ChunkCount = 16;

    private readonly int _worldSize;
    private readonly Process[] _local;   // ranks 1 .. local count, rank r at r − 1
    private readonly ShmBroadcastWriter? _queue;
    private readonly TcpBroadcastServer? _remote;   // ranks on other nodes
    private readonly ConcurrentQueue<string>[] _errors;   // per rank r at r − 1
    private readonly TaskCompletionSource[] _ready;
    private readonly ArrayBufferWriter<byte> _message = new();
    private readonly Action<string>? _log;
    private Action<Exception>? _onFailure;
    private volatile bool _stopping;

    private WorkerProcesses(EngineArgs args, Action<string>? log)
    {
        _log = log;
        _worldSize = args.TensorParallelSize;
        int localWorkers = args.RanksPerNode - 1;
        _local = new Process[localWorkers];
        _errors = [.. Enumerable.Range(1, _worldSize - 1).Select(_ => new ConcurrentQueue<string>())];
        _ready = [.. Enumerable.Range(1, _worldSize - 1).Select(_ => new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously))];
        if (localWorkers > 0)
        {
            _queue = ShmBroadcastWriter.Create(localWorkers, ChunkBytes, ChunkCount, reader => !_local[reader].HasExited);
        }

        if (args.NNodes > 1)
        {
            _remote = TcpBroadcastServer.Listen(new IPEndPoint(MasterAddress(args.MasterAddr), args.MasterPort));
            _remote.Reply += OnReply;
            _remote.Disconnected += (rank, e) => Fail(rank, WithErrors(rank, $"Tensor-parallel rank {rank} on another node dropped its connection ({e.Message})"));
        }
    }

    /// <summary>Starts this node's ranks 1 .. share − 1 and, with other nodes, waits until their ranks have connected; each then waits for the plan.</summary>
    public static WorkerProcesses Start(EngineArgs args, Action<string>? log)
    {
        var processes = new WorkerProcesses(args, log);
        try
        {
            for (int rank = 1; rank < args.RanksPerNode; rank++)
            {
                processes.Launch(rank);
            }

            if (processes._remote is { } remote)
            {
                int[] ranks = [.. Enumerable.Range(args.RanksPerNode, args.TensorParallelSize - args.RanksPerNode)];
                log?.Invoke($"waiting for ranks {ranks[0]} .. {ranks[^1]} of the other nodes at {remote.LocalEndPoint} (celer serve --headless --node-rank 1 ..)");
                remote.WaitForReaders(ranks, LoadTimeout);
            }

            return processes;
        }
        catch
        {
            processes.Dispose();
            throw;
        }
    }

    /// <summary>The address node 0 listens on for the other nodes: <c>--master-addr</c>, an IP address or a host name of this host.</summary>
    public static IPAddress MasterAddress(string masterAddr) =>
        IPAddress.TryParse(masterAddr, out IPAddress? address) ? address : Dns.GetHostAddresses(masterAddr).First();

    public void SendPlan(WorkerPlan plan) => Broadcast(WorkerMessages.EncodePlan(plan));

    /// <summary>Tells every worker its KV cache's size and waits until each has loaded its shard and allocated it.</summary>
    public void AllocateKvCaches(int numBlocks)
    {
        Broadcast(WorkerMessages.EncodeKvCache(numBlocks));
        for (int rank = 1; rank < _worldSize; rank++)
        {
            try
            {
                if (!_ready[rank - 1].Task.Wait(LoadTimeout))
                {
                    throw new ModelLoadException($"Tensor-parallel rank {rank} did not finish loading in {LoadTimeout.TotalMinutes:F0} minutes.");
                }
            }
            catch (AggregateException e) when (e.InnerException is ModelLoadException failed)
            {
                throw failed;
            }
        }
    }

    public void Start(PeerCall work)
    {
        _message.ResetWrittenCount();
        WorkerMessages.Encode(work, _message);
        Broadcast(_message.WrittenSpan);
    }

    public void Join()
    {
        for (int i = 0; i < _local.Length; i++)
        {
            if (_local[i].HasExited)
            {
                throw new InvalidOperationException(ExitMessage(i + 1));
            }
        }
    }

    /// <summary>Calls <paramref name="onFailure"/> (once, from another thread) when a worker exits while the engine runs.</summary>
    public void WatchFailures(Action<Exception> onFailure)
    {
        _onFailure = onFailure;
        for (int i = 0; i < _local.Length; i++)
        {
            if (_local[i].HasExited)
            {
                OnExited(i + 1);
            }
        }
    }

    public void Dispose()
    {
        _stopping = true;
        // The workers read what was sent, then the close, and exit.
        _queue?.Dispose();
        _remote?.Dispose();
        foreach (Process worker in _local.Where(w => w is not null))
        {
            try
            {
                if (!worker.WaitForExit(TimeSpan.FromSeconds(10)))
                {
                    worker.Kill(entireProcessTree: true);
                    worker.WaitForExit();
                }
            }
            catch (InvalidOperationException)
            {
                // Never started.
            }

            worker.Dispose();
        }
    }

    private void Broadcast(ReadOnlySpan<byte> message)
    {
        _queue?.Enqueue(message, LoadTimeout);
        _remote?.Enqueue(message, LoadTimeout);
    }

    private void Launch(int rank)
    {
        string rendezvous = _queue!.Name;
        var worker = new Process { StartInfo = WorkerLaunch.StartInfo(TensorParallelWorker.Arguments(rendezvous, rank)), EnableRaisingEvents = true };
        worker.OutputDataReceived += (_, line) =>
        {
            if (line.Data == TensorParallelWorker.ReadyLine)
            {
                _ready[rank - 1].TrySetResult();
            }
            else if (line.Data is { } text)
            {
                _log?.Invoke($"rank {rank}: {text}");
            }
        };
        worker.ErrorDataReceived += (_, line) =>
        {
            if (line.Data is { } text)
            {
                Remember(rank, text);
                _log?.Invoke($"rank {rank}: {text}");
            }
        };
        worker.Exited += (_, _) => OnExited(rank);
        _local[rank - 1] = worker;
        worker.Start();
        worker.BeginOutputReadLine();
        worker.BeginErrorReadLine();
    }

    private void OnReply(int rank, string text)
    {
        if (text == ReadyReply)
        {
            _ready[rank - 1].TrySetResult();
        }
        else
        {
            Remember(rank, text);
            _log?.Invoke($"rank {rank}: {text}");
        }
    }

    /// <summary>Keeps the last lines a worker wrote to its standard error (or replied), for the message if it fails.</summary>
    private void Remember(int rank, string text)
    {
        ConcurrentQueue<string> errors = _errors[rank - 1];
        errors.Enqueue(text);
        while (errors.Count > 20 && errors.TryDequeue(out _))
        {
        }
    }

    private void OnExited(int rank)
    {
        if (_stopping)
        {
            return;
        }

        // The exit event can come before the last lines of stderr are read: wait for them (the streams close with the process).
        _local[rank - 1].WaitForExit();
        Fail(rank, ExitMessage(rank));
    }

    private void Fail(int rank, string message)
    {
        if (_stopping)
        {
            return;
        }

        _ready[rank - 1].TrySetException(new ModelLoadException(message));
        Interlocked.Exchange(ref _onFailure, null)?.Invoke(new InvalidOperationException(message));
    }

    private string ExitMessage(int rank) =>
        WithErrors(rank, $"Tensor-parallel rank {rank} (process {_local[rank - 1].Id}) exited with code {_local[rank - 1].ExitCode}");

    /// <summary><paramref name="what"/> happened to a worker, with the last lines it wrote or replied.</summary>
    private string WithErrors(int rank, string what)
    {
        string errors = string.Join(Environment.NewLine, _errors[rank - 1]);
        return what + (errors.Length > 0 ? ": " + errors : ".");
    }
}
