using System.Collections.Concurrent;
using System.Runtime.CompilerServices;
using System.Threading.Channels;
using Celer.Engine.Scheduling;
using Celer.Tokenization;

namespace Celer.Engine;

/// <summary>
/// The serving engine (vLLM's <c>AsyncLLM</c>): a dedicated loop thread steps the engine while
/// there is work and sleeps on a signal otherwise. Callers never touch the scheduler: they hand
/// over commands (add, abort) that the loop applies between steps, and read their request's own
/// unbounded channel, so a slow consumer never stalls the loop.
/// </summary>
public sealed class AsyncLlmEngine : IAsyncDisposable
{
    private readonly EngineDriver _driver;
    private readonly ConcurrentQueue<Action> _commands = new();
    private readonly ConcurrentDictionary<string, Channel<RequestOutput>> _streams = new();
    private readonly SemaphoreSlim _wakeup = new(0);
    private readonly TaskCompletionSource _loopDone = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private volatile bool _stopping;
    private volatile bool _dead;
    private (int Level, TaskCompletionSource Done)? _pendingSleep;   // the loop's: a sleep waiting for running requests
    private double _lastRequestTime;

    // How long requests for a sleeping model wait before the loop asks again for room to wake it.
    private static readonly TimeSpan RoomPollInterval = TimeSpan.FromMilliseconds(50);

    /// <param name="executor">Owned by the engine: disposed with it.</param>
    public AsyncLlmEngine(EngineArgs args, IModelExecutor executor, Tokenizer? tokenizer, EngineModelInfo model, IEngineStatsListener? listener = null)
    {
        _driver = new EngineDriver(args, executor, tokenizer, model, listener);
        // A failure outside a step (a worker process gone) ends the loop as a failed step would.
        executor.WatchFailures(failure => Enqueue(() => throw failure));
        var thread = new Thread(RunLoop) { IsBackground = true, Name = "celer-engine-loop" };
        thread.Start();
    }

    /// <summary>The loop threw: in-flight requests ended with <see cref="EngineDeadException"/>; /health answers 503.</summary>
    public bool IsDead => _dead;
    public EngineStats Stats => _driver.Stats;
    public int MaxModelLen => _driver.InputProcessor.MaxModelLen;
    public int VocabSize => _driver.InputProcessor.VocabSize;

    /// <summary>A pooling model's pooler (its requests carry <see cref="GenerateRequest.Pooling"/>); null for a generative model.</summary>
    public PoolerConfig? Pooler => _driver.InputProcessor.Pooler;

    /// <summary>Whether the model was loaded with sleep mode (<c>--enable-sleep-mode</c>).</summary>
    public bool SupportsSleep => _driver.SupportsSleep;

    /// <summary>Whether any part of the model (weights, KV cache) sleeps.</summary>
    public bool IsSleeping => _driver.IsSleeping;

    /// <summary>
    /// Asked on the engine's loop before a sleeping model wakes because requests came for it: a server serving several
    /// models may put others to sleep to make room. False: no room yet; the requests wait and it is asked again shortly.
    /// </summary>
    public Func<AsyncLlmEngine, bool>? MakeRoomToWake { get; set; }

    /// <summary>When the latest request came (<see cref="EngineClock"/> seconds), for a least-recently-used choice.</summary>
    public double LastRequestTime => Volatile.Read(ref _lastRequestTime);

    /// <summary>No request running or waiting, as of the last step or command.</summary>
    public bool IsIdle => Stats.NumRunning == 0 && Stats.NumWaiting == 0;

    /// <summary>Device bytes a full wake-up takes back (0 while awake).</summary>
    public long BytesToWake => _driver.BytesToWake;

    /// <summary>Free device memory now; null on the CPU.</summary>
    public long? DeviceFreeBytes => _driver.DeviceFreeBytes;

    /// <summary>
    /// Puts the model to sleep (vLLM's <c>/sleep</c>): waiting requests are held back, the running ones finish, then the
    /// KV cache's memory is given back, and the weights': level 1 keeps them in host memory for a fast wake, level 2
    /// discards them (waking loads them from the checkpoint). Completes once the model sleeps. A request that arrives
    /// while it sleeps wakes it (<see cref="BeforeWakeOnDemand"/> first). Sleeping again while asleep changes nothing.
    /// </summary>
    public Task SleepAsync(int level)
    {
        if (level is not (1 or 2))
        {
            throw new ArgumentOutOfRangeException(nameof(level), level, "The sleep level is 1 (weights kept in host memory) or 2 (weights discarded).");
        }

        RequireSleepMode();
        ThrowIfUnavailable();
        var done = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        Enqueue(() =>
        {
            if (_driver.WeightsAsleep && _driver.KvCacheAsleep)
            {
                done.TrySetResult();
                return;
            }

            CancelPendingSleep();
            _pendingSleep = (level, done);
            _driver.AdmissionPaused = true;
        }, done);
        return done.Task;
    }

    /// <summary>
    /// Wakes the model (vLLM's <c>/wake_up</c>): its weights, its KV cache, or both (vLLM's tags <c>weights</c> and
    /// <c>kv_cache</c>); it serves again once both are awake. A sleep still waiting for running requests is called off.
    /// </summary>
    public Task WakeUpAsync(bool weights = true, bool kvCache = true)
    {
        RequireSleepMode();
        ThrowIfUnavailable();
        var done = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        Enqueue(() =>
        {
            CancelPendingSleep();
            try
            {
                _driver.WakeUp(weights, kvCache);
            }
            catch (Exception e)
            {
                done.TrySetException(e);
                throw;
            }

            done.TrySetResult();
        }, done);
        return done.Task;
    }

    /// <summary>
    /// Admits a request (validation errors throw here, synchronously) and streams its deltas. The
    /// request starts at once; cancelling the token, or leaving the enumeration early, aborts it
    /// and frees its blocks within one step.
    /// </summary>
    public IAsyncEnumerable<RequestOutput> GenerateAsync(GenerateRequest request, CancellationToken cancellationToken = default)
    {
        ThrowIfUnavailable();
        double arrivalTime = EngineClock.Now;
        Volatile.Write(ref _lastRequestTime, arrivalTime);
        IReadOnlyList<Request> sequences = _driver.InputProcessor.Process(request, arrivalTime);
        var channel = Channel.CreateUnbounded<RequestOutput>(new UnboundedChannelOptions { SingleReader = true, SingleWriter = true });
        if (!_streams.TryAdd(request.RequestId, channel))
        {
            throw new EngineRequestException($"Request id {request.RequestId} is already in use.", "request_id");
        }
        if (_dead || _stopping)
        {
            // The loop ended between the first check and the registration: nobody would complete the stream.
            _streams.TryRemove(request.RequestId, out _);
            ThrowIfUnavailable();
        }
        Enqueue(() => _driver.Add(request, sequences, arrivalTime));
        return ReadStream(request.RequestId, channel.Reader, cancellationToken);
    }

    /// <summary>Aborts a request; completes once the loop has freed its blocks (or at once if it is gone).</summary>
    public Task AbortAsync(string requestId)
    {
        if (_dead || _stopping)
        {
            return Task.CompletedTask;
        }
        var done = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        Enqueue(() =>
        {
            AbortOnLoop(requestId);
            done.TrySetResult();
        }, done);
        return done.Task;
    }

    /// <summary>
    /// Aborts every request in flight (a shutdown out of time): each stream gets its final output, finish reason
    /// abort, so clients see a finished response rather than a cut connection. Completes once the loop has done it.
    /// </summary>
    public Task AbortAllAsync()
    {
        if (_dead || _stopping)
        {
            return Task.CompletedTask;
        }
        var done = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        Enqueue(() =>
        {
            foreach (string requestId in _streams.Keys)
            {
                AbortOnLoop(requestId);
            }
            done.TrySetResult();
        }, done);
        return done.Task;
    }

    public async ValueTask DisposeAsync()
    {
        _stopping = true;
        _wakeup.Release();
        await _loopDone.Task;
        _driver.Dispose();
        _wakeup.Dispose();
    }

    private async IAsyncEnumerable<RequestOutput> ReadStream(string requestId, ChannelReader<RequestOutput> reader, [EnumeratorCancellation] CancellationToken cancellationToken)
    {
        bool finished = false;
        try
        {
            while (await reader.WaitToReadAsync(cancellationToken))
            {
                while (reader.TryRead(out RequestOutput? output))
                {
                    finished = output.Finished;
                    yield return output;
                }
            }
        }
        finally
        {
            if (!finished)
            {
                // The caller went away (cancelled or stopped reading): free the request's blocks.
                _ = AbortAsync(requestId);
            }
        }
    }

    private void Enqueue(Action command, TaskCompletionSource? completion = null)
    {
        _commands.Enqueue(command);
        _wakeup.Release();
        if ((_dead || _stopping) && completion is not null)
        {
            // The loop may have exited before seeing the command.
            completion.TrySetResult();
        }
    }

    private void RunLoop()
    {
        try
        {
            while (!_stopping)
            {
                RunCommands();
                if (_pendingSleep is { } sleep && _driver.IsQuiet)
                {
                    FinishSleep(sleep.Level, sleep.Done);
                    continue;
                }
                if (!_driver.HasWork)
                {
                    // Idle: sleep until a command arrives (every enqueue releases the semaphore).
                    _wakeup.Wait();
                    continue;
                }
                if (_pendingSleep is null && _driver.IsSleeping && _driver.Scheduler.NumWaiting > 0)
                {
                    // Requests came for a sleeping model: wake it on demand, once the device has room for it.
                    if (MakeRoomToWake is { } makeRoom && !makeRoom(this))
                    {
                        _wakeup.Wait(RoomPollInterval);
                        continue;
                    }

                    _driver.WakeUp(weights: true, kvCache: true);
                }
                foreach (RequestOutput output in _driver.Step())
                {
                    Deliver(output);
                }
            }
            // Requests admitted before the stop get a final abort output rather than a dangling stream.
            RunCommands();
            AbortAllOnLoop();
            CancelPendingSleep();
        }
        catch (Exception e)
        {
            Die(e);
            CancelPendingSleep();
        }
        finally
        {
            _loopDone.TrySetResult();
        }
    }

    private void FinishSleep(int level, TaskCompletionSource done)
    {
        _pendingSleep = null;
        _driver.AdmissionPaused = false;
        try
        {
            _driver.Sleep(level);
        }
        catch (Exception e)
        {
            // Memory half given back leaves the model unusable: the loop dies, and the caller hears why.
            done.TrySetException(e);
            throw;
        }

        done.TrySetResult();
    }

    private void CancelPendingSleep()
    {
        if (_pendingSleep is { } pending)
        {
            _pendingSleep = null;
            _driver.AdmissionPaused = false;
            pending.Done.TrySetException(new OperationCanceledException("The model was woken before it fell asleep."));
        }
    }

    private void RequireSleepMode()
    {
        if (!_driver.SupportsSleep)
        {
            throw new InvalidOperationException("The model was loaded without sleep mode: start it with --enable-sleep-mode.");
        }
    }

    private void RunCommands()
    {
        while (_commands.TryDequeue(out Action? command))
        {
            command();
        }
    }

    private void AbortOnLoop(string requestId)
    {
        if (_driver.Abort(requestId) is { } output)
        {
            Deliver(output);
        }
    }

    private void AbortAllOnLoop()
    {
        foreach (string requestId in _streams.Keys)
        {
            AbortOnLoop(requestId);
            if (_streams.TryRemove(requestId, out Channel<RequestOutput>? stale))
            {
                // Registered but never added (the loop stopped first).
                stale.Writer.TryComplete(new ObjectDisposedException(nameof(AsyncLlmEngine)));
            }
        }
    }

    private void Deliver(RequestOutput output)
    {
        if (!_streams.TryGetValue(output.RequestId, out Channel<RequestOutput>? channel))
        {
            return;
        }
        channel.Writer.TryWrite(output);
        if (output.Finished)
        {
            channel.Writer.TryComplete();
            _streams.TryRemove(output.RequestId, out _);
        }
    }

    private void Die(Exception e)
    {
        _dead = true;
        _driver.Clear();
        var error = new EngineDeadException("The engine loop failed; the request was not completed.", e);
        foreach (string requestId in _streams.Keys)
        {
            if (_streams.TryRemove(requestId, out Channel<RequestOutput>? channel))
            {
                channel.Writer.TryComplete(error);
            }
        }
    }

    private void ThrowIfUnavailable()
    {
        if (_dead)
        {
            throw new EngineDeadException("The engine loop failed earlier; no new requests are accepted.");
        }
        ObjectDisposedException.ThrowIf(_stopping, this);
    }
}
