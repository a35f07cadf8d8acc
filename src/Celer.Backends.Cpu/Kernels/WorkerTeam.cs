using System.Diagnostics;
using System.Runtime.CompilerServices;
using System.Runtime.ExceptionServices;

namespace Celer.Backends.Cpu.Kernels;

/// <summary>
/// The threads that run kernels' parallel loops: one per core beside the caller, started once. A loop hands out its
/// chunks through a counter; the caller takes chunks too, then waits for the last one. Workers spin for a short while
/// after a loop before they sleep, so the next kernel of the same step starts in microseconds. The thread pool's
/// <see cref="Parallel.For(int, int, Action{int})"/> woke its workers and allocated its replicas for every kernel: on a
/// 2-core VM, 128 decode steps of the default model at batch 8 took 0.41–0.47 s with it and 0.34–0.39 s with this
/// team (three runs each). One loop runs at a time; a loop started while
/// another runs (another engine in the process, or a kernel inside a loop body) runs on its caller's thread alone.
/// </summary>
internal static unsafe class WorkerTeam
{
    /// <summary>How long an idle worker spins before it sleeps: longer than the gap between two kernels of a step.</summary>
    private static readonly long SpinTicks = Stopwatch.Frequency / 10_000;   // 100 µs

    private static readonly int WorkerCount = Math.Max(0, Environment.ProcessorCount - 1);
    private static readonly SemaphoreSlim Wakeup = new(0);
    private static readonly Lazy<bool> Started = new(StartWorkers);

    private static int s_busy;        // 1 while a loop owns the team
    private static int s_generation;  // bumped per loop; workers wait for a new one
    private static int s_sleepers;    // workers blocked on Wakeup

    /// <summary>
    /// The loop running now: one object reused for every loop (one runs at a time), so starting one allocates nothing.
    /// A worker may still be taking its last, empty, turn at a loop when the caller starts the next one, or wake for a
    /// loop that already ended: the job says which loop its fields belong to (−1 while they change), a worker runs it
    /// only for the loop it woke for, and the fields change only when no worker is inside.
    /// </summary>
    private sealed class Job
    {
        private void* _loop;                                    // the caller's loop struct, on its stack until the loop ends
        private delegate*<void*, int, void> _run;               // RunChunk for the struct's type
        private int _chunks;
        private int _next;                                      // the next chunk to hand out
        private int _completed;                                 // chunks finished
        private ExceptionDispatchInfo? _failure;                // the first exception a chunk threw
        private int _generation = -1;
        private int _inside;                                    // workers inside RunFor

        public static readonly Job Current = new();

        public void Start<TLoop>(ref TLoop loop, int chunks, int generation) where TLoop : struct, IChunkLoop
        {
            // A full fence, not a release store: the look at _inside below must not move before it (x86 lets a load pass
            // an earlier store). Otherwise a worker could count itself in and still see the old loop's generation after
            // this thread saw no worker inside, and take a chunk of the loop being set up: the same Dekker pair as the
            // worker's own increment of _inside before its look at _generation.
            Interlocked.Exchange(ref _generation, -1);
            var wait = new SpinWait();
            while (Volatile.Read(ref _inside) > 0)
            {
                wait.SpinOnce(sleep1Threshold: -1);
            }

            _loop = Unsafe.AsPointer(ref loop);
            _run = &RunChunk<TLoop>;
            _chunks = chunks;
            _next = 0;
            _completed = 0;
            _failure = null;
            Volatile.Write(ref _generation, generation);
        }

        /// <summary>A worker's turn: the loop's chunks, if the job still holds the loop it woke for.</summary>
        public void RunFor(int generation)
        {
            Interlocked.Increment(ref _inside);
            if (Volatile.Read(ref _generation) == generation)
            {
                Run();
            }

            Interlocked.Decrement(ref _inside);
        }

        /// <summary>Takes chunks until none are left.</summary>
        public void Run()
        {
            int chunk;
            while ((chunk = Interlocked.Increment(ref _next) - 1) < _chunks)
            {
                try
                {
                    _run(_loop, chunk);
                }
                catch (Exception e)
                {
                    Interlocked.CompareExchange(ref _failure, ExceptionDispatchInfo.Capture(e), null);
                }
                finally
                {
                    Interlocked.Increment(ref _completed);
                }
            }
        }

        /// <summary>Waits until every chunk has run, then rethrows the first exception one threw.</summary>
        public void Wait()
        {
            var wait = new SpinWait();
            while (Volatile.Read(ref _completed) < _chunks)
            {
                wait.SpinOnce(sleep1Threshold: -1);
            }

            _failure?.Throw();
        }

        private static void RunChunk<TLoop>(void* loop, int chunk) where TLoop : struct, IChunkLoop => Unsafe.AsRef<TLoop>(loop).Run(chunk);
    }

    /// <summary>Runs <paramref name="loop"/> for 0..chunks-1 on the team, or on this thread when the team is taken.</summary>
    public static void For<TLoop>(int chunks, ref TLoop loop) where TLoop : struct, IChunkLoop
    {
        if (WorkerCount == 0 || !Started.Value || Interlocked.CompareExchange(ref s_busy, 1, 0) != 0)
        {
            // On this thread alone, with the team's semantics: every chunk runs, then the first exception is rethrown.
            ExceptionDispatchInfo? failure = null;
            for (int c = 0; c < chunks; c++)
            {
                try
                {
                    loop.Run(c);
                }
                catch (Exception e)
                {
                    failure ??= ExceptionDispatchInfo.Capture(e);
                }
            }

            failure?.Throw();
            return;
        }

        try
        {
            int generation = (s_generation + 1) & int.MaxValue;   // only the team's owner changes it
            Job.Current.Start(ref loop, chunks, generation);
            Interlocked.Exchange(ref s_generation, generation);   // a full fence: the job is visible before the new generation
            int sleeping = Volatile.Read(ref s_sleepers);
            if (sleeping > 0 && chunks > 1)
            {
                Wakeup.Release(Math.Min(sleeping, chunks - 1));
            }

            Job.Current.Run();
            Job.Current.Wait();
        }
        finally
        {
            Volatile.Write(ref s_busy, 0);
        }
    }

    private static bool StartWorkers()
    {
        for (int i = 0; i < WorkerCount; i++)
        {
            new Thread(WorkerLoop) { IsBackground = true, Name = $"celer-cpu-worker-{i}" }.Start();
        }

        return true;
    }

    private static void WorkerLoop()
    {
        int seen = Volatile.Read(ref s_generation);
        while (true)
        {
            long deadline = Stopwatch.GetTimestamp() + SpinTicks;
            while (Volatile.Read(ref s_generation) == seen)
            {
                if (Stopwatch.GetTimestamp() < deadline)
                {
                    Thread.SpinWait(16);
                    continue;
                }

                // The count goes up before the second look (both full fences), so a loop published in between is
                // either seen here or finds this worker counted and releases it. A spare release only wakes a worker
                // that then finds nothing new and sleeps again.
                Interlocked.Increment(ref s_sleepers);
                if (Volatile.Read(ref s_generation) == seen)
                {
                    Wakeup.Wait();
                }

                Interlocked.Decrement(ref s_sleepers);
                deadline = Stopwatch.GetTimestamp() + SpinTicks;
            }

            seen = Volatile.Read(ref s_generation);
            Job.Current.RunFor(seen);
        }
    }
}
