using Celer.Backends.Cuda.Interop;
using Celer.Models.Backend;
using Celer.Models.Weights;

namespace Celer.Backends.Cuda.Tests;

/// <summary>
/// <see cref="NcclCollectives"/> through the real NCCL: a group of one on one GPU, and groups of two whose ranks are threads
/// of this process, each with its own backend on its own GPU (as the engine's in-process peers run). Inputs are random,
/// of magnitude in [0.25, 1) with random signs, so the sum of two is exact in fp32 and a bf16 sum is the one rounding of
/// it: with two ranks each element is one addition whatever algorithm NCCL picks, so the results must equal the host's
/// bit for bit. Each test opens its own devices, so no other test's work lands on the streams these record graphs on.
/// </summary>
public sealed class NcclCollectivesTests
{
    // A collective whose peer never comes waits forever: a rank that takes longer fails the test instead.
    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(120);

    [Fact]
    public void One_rank_all_reduce_keeps_its_rows_and_all_gather_copies_them_into_the_output()
    {
        RequireGpus(1);
        using var device = CudaDevice.Open(0);
        using var host = new HostTensors(5);
        WeightTensor xValues = host.Random("x", DType.F32, 1f, 6, 48);
        WeightTensor localValues = host.Random("local", DType.F32, 1f, 6, 40), outputValues = host.Random("output", DType.F32, 1f, 6, 40);
        var backend = new CudaBackend(device, DType.F32);
        NcclCollectives? group = null;
        try
        {
            group = new NcclCollectives(backend, NcclCollectives.CreateUniqueId(), rank: 0, size: 1);
            Assert.Equal((0, 1), (group.Rank, group.Size));
            Tensor x = backend.LoadWeight(xValues);
            float[] before = HostTensors.Read(backend, x, 6);
            group.AllReduce(x, 5);
            Assert.Equal(before, HostTensors.Read(backend, x, 6));

            Tensor local = backend.LoadWeight(localValues), output = backend.LoadWeight(outputValues);
            float[] expected = HostTensors.Read(backend, output, 6);
            HostTensors.Read(backend, local, 4).CopyTo(expected, 0);   // rows 4 and 5 keep what they held
            group.AllGatherColumns(local, 4, output);
            Assert.Equal(expected, HostTensors.Read(backend, output, 6));
            Assert.Null(group.AsyncError());
        }
        finally
        {
            backend.Dispose();
            group?.Dispose();
        }
    }

    [Fact]
    public void A_rank_refuses_dtypes_it_cannot_sum_shapes_that_do_not_fit_and_calls_after_it_is_closed()
    {
        RequireGpus(1);
        using var device = CudaDevice.Open(0);
        var backend = new CudaBackend(device, DType.BF16);
        NcclCollectives? group = null;
        try
        {
            Assert.Throws<ArgumentException>("uniqueId", () => new NcclCollectives(backend, new byte[127], 0, 1));
            Assert.Throws<ArgumentOutOfRangeException>("rank", () => new NcclCollectives(backend, new byte[128], 1, 1));
            group = new NcclCollectives(backend, NcclCollectives.CreateUniqueId(), 0, 1);
            Tensor fp8 = backend.Allocate("fp8", DType.F8E4M3, 2, 16), x = backend.Allocate("x", DType.BF16, 2, 16);
            Assert.Contains("bf16, fp16 or fp32", Assert.Throws<NotSupportedException>(() => group.AllReduce(fp8, 2)).Message, StringComparison.Ordinal);
            Assert.Throws<ArgumentOutOfRangeException>("x", () => group.AllReduce(x, 3));
            Tensor output = backend.Allocate("output", DType.BF16, 2, 32), logits = backend.Allocate("logits", DType.F32, 2, 16);
            Assert.Contains("needs 16 output columns, not 32", Assert.Throws<ArgumentException>("output", () => group.AllGatherColumns(x, 2, output)).Message, StringComparison.Ordinal);
            Assert.Throws<ArgumentException>("output", () => group.AllGatherColumns(x, 2, logits));

            group.Abort();
            Assert.Contains("aborted", Assert.Throws<CudaException>(() => group.AllReduce(x, 2)).Message, StringComparison.Ordinal);
            Assert.Contains("aborted", group.AsyncError(), StringComparison.Ordinal);
            group.Abort();   // a second abort, and the dispose after it, do nothing

            var disposed = new NcclCollectives(backend, NcclCollectives.CreateUniqueId(), 0, 1);
            disposed.Dispose();
            Assert.Throws<ObjectDisposedException>(() => disposed.AllGatherColumns(x, 2, x));
            Assert.Throws<ObjectDisposedException>(() => disposed.AsyncError());
        }
        finally
        {
            backend.Dispose();
            group?.Dispose();
        }
    }

    [Theory]
    [InlineData(DType.F32)]
    [InlineData(DType.BF16)]
    public void Two_ranks_sum_rows_and_gather_columns_as_the_host_does(DType dtype)
    {
        RequireGpus(2);
        const int capacity = 6, rows = 5, hidden = 48, vocab = 40;
        var random = new Random(11);
        float[][] xs = [HostTensors.SignedValues(random, capacity * hidden, dtype), HostTensors.SignedValues(random, capacity * hidden, dtype)];
        float[][] locals = [HostTensors.SignedValues(random, capacity * vocab, dtype), HostTensors.SignedValues(random, capacity * vocab, dtype)];
        float[][] outputs = [HostTensors.SignedValues(random, capacity * 2 * vocab, dtype), HostTensors.SignedValues(random, capacity * 2 * vocab, dtype)];
        using var host = new HostTensors(0);
        WeightTensor[] x = [.. xs.Select(v => host.FromValues("x", v, capacity, hidden))];
        WeightTensor[] local = [.. locals.Select(v => host.FromValues("local", v, capacity, vocab))];
        WeightTensor[] output = [.. outputs.Select(v => host.FromValues("output", v, capacity, 2 * vocab))];

        var results = OnTwoRanks(dtype, (rank, backend, group) =>
        {
            Tensor h = backend.LoadWeight(x[rank]);
            group.AllReduce(h, rows);
            Tensor part = backend.LoadWeight(local[rank]), whole = backend.LoadWeight(output[rank]);
            group.AllGatherColumns(part, rows, whole);
            float[] gathered = HostTensors.Read(backend, whole, capacity);
            backend.Scale(part, capacity, -2f);   // exact: new values for a gather of fewer rows into the same output
            group.AllGatherColumns(part, 2, whole);
            return (Reduced: HostTensors.Read(backend, h, capacity), Gathered: gathered, Regathered: HostTensors.Read(backend, whole, capacity));
        });

        for (int rank = 0; rank < 2; rank++)
        {
            float[] sum = (float[])xs[rank].Clone();   // the row past `rows` is left as it was
            for (int i = 0; i < rows * hidden; i++)
            {
                sum[i] = HostTensors.Rounded(xs[0][i] + xs[1][i], dtype);
            }

            Assert.Equal(sum, results[rank].Reduced);
            float[] gathered = Gathered(locals, 1f, rows, vocab, outputs[rank]);
            Assert.Equal(gathered, results[rank].Gathered);
            Assert.Equal(Gathered(locals, -2f, 2, vocab, gathered), results[rank].Regathered);
        }
    }

    /// <summary>
    /// An all-reduce and an all-gather recorded in a CUDA graph after one eager round (which sizes the gather buffer and
    /// connects NCCL's channels, as the model's first eager step does): the recording's own launch and each replay run
    /// both collectives again, on what the buffers hold then. The all-reduce is in place, so each launch doubles the sum
    /// (exact): S after the eager round, 2S after the recording's launch, 4S after a replay.
    /// </summary>
    [Theory]
    [InlineData(DType.F32)]
    [InlineData(DType.BF16)]
    public void Two_ranks_replay_collectives_recorded_in_a_cuda_graph(DType dtype)
    {
        RequireGpus(2);
        const int rows = 4, hidden = 64, vocab = 24;
        var random = new Random(23);
        float[][] xs = [HostTensors.SignedValues(random, rows * hidden, dtype), HostTensors.SignedValues(random, rows * hidden, dtype)];
        float[][] locals = [HostTensors.SignedValues(random, rows * vocab, dtype), HostTensors.SignedValues(random, rows * vocab, dtype)];
        using var host = new HostTensors(0);
        WeightTensor[] x = [.. xs.Select(v => host.FromValues("x", v, rows, hidden))];
        WeightTensor[] local = [.. locals.Select(v => host.FromValues("local", v, rows, vocab))];

        var results = OnTwoRanks(dtype, (rank, backend, group) =>
        {
            Tensor h = backend.LoadWeight(x[rank]), part = backend.LoadWeight(local[rank]);
            Tensor whole = backend.Allocate("logits", dtype, rows, 2 * vocab);
            group.AllReduce(h, rows);
            group.AllGatherColumns(part, rows, whole);
            float[] eager = HostTensors.Read(backend, h, rows);
            backend.BeginCapture();
            group.AllReduce(h, rows);
            group.AllGatherColumns(part, rows, whole);
            backend.EndCapture(rows);   // launches the graph once
            float[] recorded = HostTensors.Read(backend, h, rows);
            backend.Scale(part, rows, 0.5f);   // exact: the replay must gather the new values
            bool replayed = backend.TryReplay(rows);
            return (Eager: eager, Recorded: recorded, Replayed: replayed, Reduced: HostTensors.Read(backend, h, rows), Gathered: HostTensors.Read(backend, whole, rows));
        });

        float[] sum = [.. xs[0].Zip(xs[1], (a, b) => HostTensors.Rounded(a + b, dtype))];
        for (int rank = 0; rank < 2; rank++)
        {
            Assert.Equal(sum, results[rank].Eager);
            Assert.Equal(sum.Select(s => 2 * s), results[rank].Recorded);
            Assert.True(results[rank].Replayed, $"rank {rank}'s graph went stale");
            Assert.Equal(sum.Select(s => 4 * s), results[rank].Reduced);
            Assert.Equal(Gathered(locals, 0.5f, rows, vocab, new float[rows * 2 * vocab]), results[rank].Gathered);
        }
    }

    /// <summary>
    /// Rank 0 queues an all-reduce that rank 1 never joins and waits for it on the GPU, as a rank does when a peer's process
    /// died; <see cref="NcclCollectives.Abort"/> from another thread lets it return, and the rank refuses collectives after.
    /// </summary>
    [Fact]
    public async Task Abort_from_another_thread_releases_a_rank_waiting_for_a_peer_that_never_comes()
    {
        RequireGpus(2);
        const int rows = 8, hidden = 256;
        var random = new Random(31);
        using var host = new HostTensors(0);
        WeightTensor[] x = [host.FromValues("x", HostTensors.SignedValues(random, rows * hidden, DType.F32), rows, hidden), host.FromValues("x", HostTensors.SignedValues(random, rows * hidden, DType.F32), rows, hidden)];
        var groups = new NcclCollectives?[2];
        using var waiting = new ManualResetEventSlim();
        using var released = new ManualResetEventSlim();
        Exception? afterAbort = null;
        CancellationToken cancel = TestContext.Current.CancellationToken;

        Task<int> ranks = Task.Run(() => OnTwoRanks(DType.F32, (rank, backend, group) =>
        {
            groups[rank] = group;
            Tensor h = backend.LoadWeight(x[rank]);
            group.AllReduce(h, rows);   // together once: NCCL connects the ranks' channels at the first collective
            HostTensors.Read(backend, h, rows);
            if (rank == 1)
            {
                released.Wait(cancel);
                return 0;
            }

            group.AllReduce(h, rows);
            waiting.Set();
            try
            {
                HostTensors.Read(backend, h, rows);   // the stream waits for rank 1's part, which never comes, until the abort
            }
            catch (CudaException)
            {
                // The abort may leave the synchronize with an error; it returned, which is what is tested.
            }

            afterAbort = Record.Exception(() => group.AllReduce(h, rows));
            return 0;
        }).Length, cancel);

        try
        {
            Assert.True(waiting.Wait(Patience, cancel), "the ranks did not get to the all-reduce rank 1 skips");
            await Task.Delay(TimeSpan.FromSeconds(2), cancel);
            Assert.False(ranks.IsCompleted, "rank 0 returned without its peer");
            Assert.Null(groups[0]!.AsyncError());
            groups[0]!.Abort();
        }
        finally
        {
            released.Set();
        }

        await ranks.WaitAsync(Patience, cancel);   // a TimeoutException: the abort did not release rank 0
        Assert.Contains("aborted", Assert.IsType<CudaException>(afterAbort).Message, StringComparison.Ordinal);
    }

    /// <summary>Skips where the test cannot run: no GPU (CI), no NCCL, or fewer GPUs than ranks.</summary>
    private static void RequireGpus(int ranks)
    {
        Gpu.Require();
        Assert.SkipUnless(NcclCollectives.IsAvailable(), "NCCL (libnccl.so.2) was not found on this machine.");
        CudaDriver.Check(CudaDriver.cuDeviceGetCount(out int count), "cuDeviceGetCount");
        Assert.SkipUnless(count >= ranks, $"A group of {ranks} ranks needs {ranks} GPUs; this machine has {count}.");
    }

    /// <summary>
    /// Runs <paramref name="body"/> as rank 0 on GPU 0 and rank 1 on GPU 1, each on a thread of its own with its own
    /// backend and communicator; returns what each rank returned.
    /// </summary>
    private static T[] OnTwoRanks<T>(DType dtype, Func<int, CudaBackend, NcclCollectives, T> body)
    {
        byte[] id = NcclCollectives.CreateUniqueId();
        using var first = CudaDevice.Open(0);
        using var second = CudaDevice.Open(1);
        CudaDevice[] devices = [first, second];
        Task<T>[] ranks = [.. Enumerable.Range(0, 2).Select(rank => Task.Factory.StartNew(() =>
        {
            devices[rank].MakeCurrent();
            var backend = new CudaBackend(devices[rank], dtype);
            NcclCollectives? group = null;
            try
            {
                group = new NcclCollectives(backend, id, rank, 2);
                return body(rank, backend, group);
            }
            finally
            {
                backend.Dispose();   // first: NCCL frees a communicator once the graphs that recorded it are destroyed
                group?.Dispose();
            }
        }, TestContext.Current.CancellationToken, TaskCreationOptions.LongRunning, TaskScheduler.Default))];
        Assert.True(Task.WaitAll(ranks, Patience), "a rank did not finish");
        return [.. ranks.Select(r => r.Result)];
    }

    /// <summary><paramref name="before"/> with rows 0 .. rows − 1 replaced by the two ranks' parts (times <paramref name="factor"/>) side by side.</summary>
    private static float[] Gathered(float[][] locals, float factor, int rows, int vocab, float[] before)
    {
        float[] expected = (float[])before.Clone();
        for (int r = 0; r < rows; r++)
        {
            for (int rank = 0; rank < 2; rank++)
            {
                for (int c = 0; c < vocab; c++)
                {
                    expected[(r * 2 * vocab) + (rank * vocab) + c] = factor * locals[rank][(r * vocab) + c];
                }
            }
        }

        return expected;
    }
}
