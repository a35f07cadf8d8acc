using Celer.Backends.Cpu.Kernels;
using Xunit;

namespace Celer.Backends.Cpu.Tests.Kernels;

/// <summary>
/// The kernels' worker threads: every chunk runs exactly once, whoever calls (several threads at once, as several
/// engines in one process do; a loop inside a loop body), and a chunk's exception reaches the caller after the loop.
/// </summary>
public class WorkerTeamTests
{
    /// <summary>A test's loop body as a chunk loop (kernels pass structs; a test may allocate its closure).</summary>
    private struct ActionLoop(Action<int> body) : IChunkLoop
    {
        public readonly void Run(int chunk) => body(chunk);
    }

    private static void For(int chunks, Action<int> body)
    {
        var loop = new ActionLoop(body);
        KernelScheduling.For(chunks, ref loop);
    }

    [Fact]
    public void Every_chunk_runs_once_under_concurrent_and_nested_loops()
    {
        const int Callers = 4, Loops = 2000;
        var failures = new List<string>();
        var threads = Enumerable.Range(0, Callers).Select(caller => new Thread(() =>
        {
            var random = new Random(caller);
            for (int loop = 0; loop < Loops; loop++)
            {
                int chunks = random.Next(2, 40);
                var counts = new int[chunks];
                var inner = new int[chunks * 3];
                For(chunks, c =>
                {
                    Interlocked.Increment(ref counts[c]);
                    if (c % 7 == 0)
                    {
                        // A kernel inside a loop body: the team is taken, so it runs on this thread.
                        For(3, k => Interlocked.Increment(ref inner[c * 3 + k]));
                    }
                });
                for (int c = 0; c < chunks; c++)
                {
                    int expectedInner = c % 7 == 0 ? 1 : 0;
                    if (counts[c] != 1 || inner[c * 3] != expectedInner || inner[c * 3 + 2] != expectedInner)
                    {
                        lock (failures)
                        {
                            failures.Add($"caller {caller} loop {loop} chunk {c}: ran {counts[c]} times");
                        }
                    }
                }
            }
        })).ToList();
        threads.ForEach(t => t.Start());
        Assert.True(threads.All(t => t.Join(TimeSpan.FromMinutes(2))), "a loop never finished");
        Assert.Empty(failures);
    }

    [Fact]
    public void A_chunks_exception_reaches_the_caller_after_every_chunk_ran()
    {
        int ran = 0;
        var e = Assert.Throws<InvalidOperationException>(() => For(16, c =>
        {
            Interlocked.Increment(ref ran);
            if (c == 5)
            {
                throw new InvalidOperationException("chunk 5");
            }
        }));
        Assert.Equal("chunk 5", e.Message);
        Assert.Equal(16, ran);

        // The team is free again.
        int after = 0;
        For(8, _ => Interlocked.Increment(ref after));
        Assert.Equal(8, after);
    }
}
