using System.Diagnostics;
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
internal static class WorkerTeam
{
    /// <summary>How long an idle worker spins before it sleeps: longer than the gap between two kernels of a step.</summary>
    private static readonly long SpinTicks = Stopwatch.Frequency / 10_000;   // 100 µs

    private static readonly int WorkerCount = Math.Max(0, Environment.ProcessorCount - 1);
    private static readonly SemaphoreSlim Wakeup = new(0);
    private static readonly Lazy<bool> Started = new(StartWorkers);

    private static int s_busy;        // 1 while a loop owns the team
    private static Job? s_job;        // the current loop (a stale worker may still hold an earlier one: it finds no chunk left)
    private static int s_generation;  // bumped per loop; workers wait for a new one
    private static int s_sleepers;    // workers blocked on Wakeup

    /// <summary>One loop: its body, and the counters the caller and the workers share.</summary>
    private sealed class Job(Action<int> body, int chunks)
    {
        public readonly Action<int> Body = body;
        public readonly int Chunks = chunks;
        public int Next;                         // the next chunk to hand out
        public int Completed;                    // chunks finished
        public ExceptionDispatchInfo? Failure;   // the first exception a chunk threw

        /// <summary>Takes chunks until none are left.</summary>
        public void Run()
        {
            int chunk;
            while ((chunk = Interlocked.Increment(ref Next) - 1) < Chunks)
            {
                try
                {
                    Body(chunk);
                }
                catch (Exception e)
                {
                    Interlocked.CompareExchange(ref Failure, ExceptionDispatchInfo.Capture(e), null);
                }
                finally
                {
                    Interlocked.Increment(ref Completed);
                }
            }
        }
    }

    /// <summary>Runs <paramref name="body"/> for 0..chunks-1 on the team, or on this thread when the team is taken.</summary>
    public static void For(int chunks, Action<int> body)
    {
        if (WorkerCount == 0 || !Started.Value || Interlocked.CompareExchange(ref s_busy, 1, 0) != 0)
        {
            for (int c = 0; c < chunks; c++)
            {
                body(c);
            }

            return;
        }

        try
        {
            var job = new Job(body, chunks);
            Volatile.Write(ref s_job, job);
            Interlocked.Increment(ref s_generation);   // a full fence: the job is visible before the new generation
            int sleeping = Volatile.Read(ref s_sleepers);
            if (sleeping > 0 && chunks > 1)
            {
                Wakeup.Release(Math.Min(sleeping, chunks - 1));
            }

            job.Run();
            var wait = new SpinWait();
            while (Volatile.Read(ref job.Completed) < chunks)
            {
                wait.SpinOnce(sleep1Threshold: -1);
            }

            job.Failure?.Throw();
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
            Volatile.Read(ref s_job)?.Run();
        }
    }
}
