using System.Buffers;
using System.Collections.Concurrent;
using System.Diagnostics;
using System.Reflection;
using Celer.Models.Architectures;
using Celer.Models.Weights;

namespace Celer.Engine.Distributed;

/// <summary>
/// Rank 0's side of a tensor-parallel group whose other ranks are processes (vLLM's multiprocessing executor,
/// <c>--distributed-executor-backend mp</c>): it starts one <see cref="TensorParallelWorker"/> per rank, this program
/// started again with the worker's arguments, and feeds them through one shared-memory broadcast queue: the plan, the KV
/// cache's size, then each call of rank 0's model (<see cref="PeerCall"/>). A worker that exits, at any time, is a failure
/// of the engine: the wait that meets it (a collective, the queue) throws, and <see cref="WatchFailures"/> hears of it at
/// once, so an idle engine turns dead too instead of failing the next request only.
/// </summary>
internal sealed class WorkerProcesses : ITensorParallelPeers
{
    /// <summary>How long loading a shard may take, and a worker may take to read a step while it is alive.</summary>
    public static readonly TimeSpan LoadTimeout = TimeSpan.FromMinutes(30);

    // A decode step's batch is a few KB; a long prompt's chunk ~100 KB. 16 chunks of 1 MiB hold a few steps ahead.
    private const int ChunkBytes = 1 << 20, ChunkCount = 16;

    private readonly Process[] _workers;   // rank r at r − 1
    private readonly ShmBroadcastWriter _queue;
    private readonly ConcurrentQueue<string>[] _errors;
    private readonly TaskCompletionSource[] _ready;
    private readonly ArrayBufferWriter<byte> _message = new();
    private readonly Action<string>? _log;
    private Action<Exception>? _onFailure;
    private volatile bool _stopping;

    private WorkerProcesses(int worldSize, Action<string>? log)
    {
        _log = log;
        _workers = new Process[worldSize - 1];
        _errors = [.. Enumerable.Range(0, worldSize - 1).Select(_ => new ConcurrentQueue<string>())];
        _ready = [.. Enumerable.Range(0, worldSize - 1).Select(_ => new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously))];
        _queue = ShmBroadcastWriter.Create(worldSize - 1, ChunkBytes, ChunkCount, reader => !_workers[reader].HasExited);
    }

    public string Rendezvous => _queue.Name;

    /// <summary>Starts ranks 1 .. <paramref name="worldSize"/> − 1; each waits for the plan.</summary>
    public static WorkerProcesses Start(int worldSize, Action<string>? log)
    {
        var processes = new WorkerProcesses(worldSize, log);
        try
        {
            for (int rank = 1; rank < worldSize; rank++)
            {
                processes.Launch(rank);
            }

            return processes;
        }
        catch
        {
            processes.Dispose();
            throw;
        }
    }

    public void SendPlan(WorkerPlan plan) => _queue.Enqueue(WorkerMessages.EncodePlan(plan), LoadTimeout);

    /// <summary>Tells every worker its KV cache's size and waits until each has loaded its shard and allocated it.</summary>
    public void AllocateKvCaches(int numBlocks)
    {
        _queue.Enqueue(WorkerMessages.EncodeKvCache(numBlocks), LoadTimeout);
        for (int i = 0; i < _workers.Length; i++)
        {
            try
            {
                if (!_ready[i].Task.Wait(LoadTimeout))
                {
                    throw new ModelLoadException($"Tensor-parallel rank {i + 1} did not finish loading in {LoadTimeout.TotalMinutes:F0} minutes.");
                }
            }
            catch (AggregateException e) when (e.InnerException is ModelLoadException failed)
            {
                throw failed;
            }
        }
    }

    /// <summary>Rank r's process is still running.</summary>
    public bool IsAlive(int rank) => !_workers[rank - 1].HasExited;

    public void Start(PeerCall work)
    {
        _message.ResetWrittenCount();
        WorkerMessages.Encode(work, _message);
        _queue.Enqueue(_message.WrittenSpan, LoadTimeout);
    }

    public void Join()
    {
        for (int i = 0; i < _workers.Length; i++)
        {
            if (_workers[i].HasExited)
            {
                throw new InvalidOperationException(ExitMessage(i));
            }
        }
    }

    /// <summary>Calls <paramref name="onFailure"/> (once, from another thread) when a worker exits while the engine runs.</summary>
    public void WatchFailures(Action<Exception> onFailure)
    {
        _onFailure = onFailure;
        for (int i = 0; i < _workers.Length; i++)
        {
            if (_workers[i].HasExited)
            {
                OnExited(i);
            }
        }
    }

    public void Dispose()
    {
        _stopping = true;
        _queue.Dispose();   // the workers read what was sent, then the close, and exit
        foreach (Process worker in _workers.Where(w => w is not null))
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

    private void Launch(int rank)
    {
        string host = Environment.ProcessPath ?? throw new InvalidOperationException("This process's executable is unknown, so no worker process can be started.");
        var start = new ProcessStartInfo(host) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        if (Path.GetFileNameWithoutExtension(host).Equals("dotnet", StringComparison.OrdinalIgnoreCase))
        {
            // `dotnet app.dll …`: the worker is the same app started again (a single-file app is its own executable, above).
            string app = Path.Combine(AppContext.BaseDirectory, (Assembly.GetEntryAssembly()?.GetName().Name ?? throw new InvalidOperationException("This process has no entry assembly to start as a worker.")) + ".dll");
            start.ArgumentList.Add(app);
        }

        foreach (string argument in TensorParallelWorker.Arguments(Rendezvous, rank))
        {
            start.ArgumentList.Add(argument);
        }

        var worker = new Process { StartInfo = start, EnableRaisingEvents = true };
        int index = rank - 1;
        worker.OutputDataReceived += (_, line) =>
        {
            if (line.Data == TensorParallelWorker.ReadyLine)
            {
                _ready[index].TrySetResult();
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
                _errors[index].Enqueue(text);
                _log?.Invoke($"rank {rank}: {text}");
            }
        };
        worker.Exited += (_, _) => OnExited(index);
        _workers[index] = worker;
        worker.Start();
        worker.BeginOutputReadLine();
        worker.BeginErrorReadLine();
    }

    private void OnExited(int index)
    {
        if (_stopping)
        {
            return;
        }

        // The exit event can come before the last lines of stderr are read: wait for them (the streams close with the process).
        _workers[index].WaitForExit();
        string message = ExitMessage(index);
        _ready[index].TrySetException(new ModelLoadException(message));
        Interlocked.Exchange(ref _onFailure, null)?.Invoke(new InvalidOperationException(message));
    }

    private string ExitMessage(int index)
    {
        string errors = string.Join(Environment.NewLine, _errors[index].TakeLast(20));
        return $"Tensor-parallel rank {index + 1} (process {_workers[index].Id}) exited with code {_workers[index].ExitCode}" +
            (errors.Length > 0 ? ": " + errors : ".");
    }
}
