using System.Diagnostics;
using System.Runtime.CompilerServices;
using Celer.Backends.Cuda.Interop;
using Celer.Engine.Tests.Distributed;
using Celer.Models.Backend;
using Celer.Models.Weights;

namespace Celer.Backends.Cuda.Tests;

/// <summary>
/// <see cref="CustomAllReduce"/> between ranks in separate processes, as tensor-parallel workers run it: each rank is this
/// test executable started again (<see cref="TestPeerProcess"/>), on GPU rank % the GPUs there are, so one GPU runs
/// both ranks (CUDA IPC maps a buffer of the same GPU into another process as well) and two GPUs run one each. The ranks
/// exchange their handles through files, check their own results against sums computed here on the host, and report
/// through their exit code and standard error.
/// </summary>
public sealed class CustomAllReduceTests
{
    private const string RoleVariable = "CELER_TEST_CUSTOM_ALL_REDUCE_RANK";
    private const long Capacity = 1L << 20;
    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(180);

    [ModuleInitializer]
    internal static void RunRankWhenAsked() => TestPeerProcess.RunIfAsked(RoleVariable, RunRank);

    [Theory]
    [InlineData(DType.BF16)]
    [InlineData(DType.F16)]
    [InlineData(DType.F32)]
    public void Two_ranks_in_two_processes_sum_as_the_host_does_eagerly_and_in_replayed_graphs(DType dtype) => RunRanks("sums", dtype);

    /// <summary>A rank whose peer's process exits before a call waits for it until <see cref="CustomAllReduce.Abort"/>, then returns.</summary>
    [Fact]
    public void Abort_releases_a_rank_whose_peer_process_is_gone() => RunRanks("abort", DType.BF16);

    /// <summary>Ranks that are threads of one process cannot map each other's buffers (CUDA IPC is between processes): both get null and the reason.</summary>
    [Fact]
    public async Task Ranks_in_one_process_stay_off_the_custom_path_together()
    {
        Gpu.Require();
        using var barrier = new Barrier(2);
        var records = new byte[2][];
        var reasons = new string?[2];
        var created = new bool[2];
        Task[] ranks = [.. Enumerable.Range(0, 2).Select(rank => Task.Factory.StartNew(() =>
        {
            Gpu.Device.MakeCurrent();
            using var backend = new CudaBackend(Gpu.Device, DType.BF16);
            using CustomAllReduce? group = CustomAllReduce.TryCreate(backend, rank, 2, mine =>
            {
                records[rank] = mine;
                barrier.SignalAndWait(TestContext.Current.CancellationToken);
                byte[][] all = [records[0], records[1]];
                barrier.SignalAndWait(TestContext.Current.CancellationToken);
                return all;
            }, out reasons[rank], Capacity);
            created[rank] = group is not null;
        }, TestContext.Current.CancellationToken, TaskCreationOptions.LongRunning, TaskScheduler.Default))];
        await Task.WhenAll(ranks).WaitAsync(Patience, TestContext.Current.CancellationToken);
        Assert.Equal([false, false], created);
        Assert.All(reasons, reason => Assert.Contains("could not be mapped", reason, StringComparison.Ordinal));
    }

    private static void RunRanks(string scenario, DType dtype)
    {
        Gpu.Require();
        string exchange = Directory.CreateTempSubdirectory("celer-custom-all-reduce-").FullName;
        try
        {
            Process[] ranks = [.. Enumerable.Range(0, 2).Select(rank => TestPeerProcess.Start(RoleVariable, scenario, dtype, rank, 2, exchange))];
            Task<string>[] errors = [.. ranks.Select(p => p.StandardError.ReadToEndAsync(TestContext.Current.CancellationToken))];
            foreach (Process rank in ranks)
            {
                _ = rank.StandardOutput.ReadToEndAsync(TestContext.Current.CancellationToken);
            }

            bool finished = ranks.All(p => p.WaitForExit(Patience));
            if (!finished)
            {
                foreach (Process p in ranks)
                {
                    p.Kill(entireProcessTree: true);
                }
            }

            Assert.True(finished, "a rank did not finish in time");
            for (int rank = 0; rank < 2; rank++)
            {
                Assert.True(ranks[rank].ExitCode == 0, $"rank {rank} exited with {ranks[rank].ExitCode}: {errors[rank].Result}");
                ranks[rank].Dispose();
            }
        }
        finally
        {
            Directory.Delete(exchange, recursive: true);
        }
    }

    /// <summary>One rank's process: words are the scenario, the dtype, the rank, the group's size and the exchange folder.</summary>
    private static void RunRank(string[] words)
    {
        string scenario = words[0];
        DType dtype = Enum.Parse<DType>(words[1]);
        int rank = int.Parse(words[2], System.Globalization.CultureInfo.InvariantCulture), size = int.Parse(words[3], System.Globalization.CultureInfo.InvariantCulture);
        string exchange = words[4];
        using CudaDevice device = CudaDevice.Open(rank % CudaDevice.Count());
        using var backend = new CudaBackend(device, dtype);
        int round = 0;
        using CustomAllReduce group = CustomAllReduce.TryCreate(backend, rank, size, mine => Exchange(exchange, round++, rank, size, mine), out string? whyNot, Capacity)
            ?? throw new InvalidOperationException($"No custom all-reduce: {whyNot}");
        if (scenario == "sums")
        {
            Sums(backend, group, dtype, rank, size);
        }
        else
        {
            AbortWithPeerGone(backend, group, dtype, rank, size);
        }
    }

    private static void Sums(CudaBackend backend, CustomAllReduce group, DType dtype, int rank, int size)
    {
        using var host = new HostTensors(0);
        int call = 0;
        // (rows, columns): one decode row of an 8B model, a few odd widths, fewer vectors than one block has threads,
        // and 400–800 KB (several sweeps of the grid, within the 1 MiB capacity in fp32 too); each three times, so
        // both halves of the buffer take turns.
        foreach ((int rows, int columns) in new[] { (1, 4096), (3, 1000), (5, 8), (64, 2048), (200, 1024) })
        {
            for (int repeat = 0; repeat < 3; repeat++, call++)
            {
                float[][] inputs = Inputs(call, size, rows * columns, dtype);
                Tensor x = backend.LoadWeight(host.FromValues("x", inputs[rank], rows, columns));
                Require(group.TryAllReduce(x, rows), $"call {call}: a {rows} × {columns} message was refused");
                Compare(HostTensors.Read(backend, x, rows), Sum(inputs, dtype), $"call {call} ({rows} × {columns})");
            }
        }

        // Messages the path does not take are left to NCCL: not whole 16-byte vectors, or over the capacity; untouched.
        int odd = dtype == DType.F32 ? 1001 : 1003;
        Tensor misfit = backend.LoadWeight(host.FromValues("misfit", Inputs(99, size, odd, dtype)[rank], 1, odd));
        Require(!group.TryAllReduce(misfit, 1), "a message of a partial vector was taken");
        int wide = (int)(Capacity / dtype.ByteSize() / 64) + 8;
        Tensor large = backend.Allocate("large", dtype, 64, wide);
        Require(!group.TryAllReduce(large, 64), "a message over the capacity was taken");

        // Recorded in a CUDA graph after an eager call: the recording's own launch and a replay each run two in-place
        // all-reduces on what the buffer holds then, so each doubles the sum twice (exact): S, 4S, 16S.
        float[][] values = Inputs(100, size, 4096, dtype);
        Tensor h = backend.LoadWeight(host.FromValues("h", values[rank], 1, 4096));
        Require(group.TryAllReduce(h, 1), "the eager call was refused");
        float[] sum = Sum(values, dtype);
        backend.BeginCapture();
        group.TryAllReduce(h, 1);
        group.TryAllReduce(h, 1);
        backend.EndCapture(1);
        Compare(HostTensors.Read(backend, h, 1), [.. sum.Select(s => 4 * s)], "the recording's launch");
        Require(backend.TryReplay(1), "the graph went stale");
        Compare(HostTensors.Read(backend, h, 1), [.. sum.Select(s => 16 * s)], "the replay");

        // Many calls in a row with no host sync between them: the per-block counters and the two halves stay in step.
        var expected = new List<float[]>();
        var tensors = new List<Tensor>();
        for (int i = 0; i < 40; i++)
        {
            float[][] inputs = Inputs(200 + i, size, 2 * 512, dtype);
            Tensor t = backend.LoadWeight(host.FromValues("burst", inputs[rank], 2, 512));
            tensors.Add(t);
            expected.Add(Sum(inputs, dtype));
        }

        foreach (Tensor t in tensors)
        {
            group.TryAllReduce(t, 2);
        }

        for (int i = 0; i < tensors.Count; i++)
        {
            Compare(HostTensors.Read(backend, tensors[i], 2), expected[i], $"burst call {i}");
        }
    }

    private static void AbortWithPeerGone(CudaBackend backend, CustomAllReduce group, DType dtype, int rank, int size)
    {
        using var host = new HostTensors(0);
        float[][] inputs = Inputs(7, size, 4096, dtype);
        Tensor x = backend.LoadWeight(host.FromValues("x", inputs[rank], 1, 4096));
        group.TryAllReduce(x, 1);
        Compare(HostTensors.Read(backend, x, 1), Sum(inputs, dtype), "the call both ranks make");
        if (rank != 0)
        {
            return;   // this process exits: rank 0's next call waits for a peer that never comes
        }

        group.TryAllReduce(x, 1);
        var clock = Stopwatch.StartNew();
        using var abort = new Timer(_ => group.Abort(), null, TimeSpan.FromSeconds(2), Timeout.InfiniteTimeSpan);
        try
        {
            backend.Device.Synchronize();
        }
        catch (CudaException)
        {
            // The abort may leave the stream with an error; returning is what is tested.
        }

        Require(clock.Elapsed >= TimeSpan.FromSeconds(1.5), $"the call returned after {clock.Elapsed} without its peer");
    }

    /// <summary>Hands this rank's bytes to the others through files in <paramref name="folder"/> and waits for theirs.</summary>
    private static byte[][] Exchange(string folder, int round, int rank, int size, byte[] mine)
    {
        string FileOf(int r) => Path.Combine(folder, $"{round}.{r}");
        File.WriteAllBytes(FileOf(rank) + ".tmp", mine);
        File.Move(FileOf(rank) + ".tmp", FileOf(rank));
        var clock = Stopwatch.StartNew();
        var all = new byte[size][];
        for (int r = 0; r < size; r++)
        {
            while (!File.Exists(FileOf(r)))
            {
                Require(clock.Elapsed < Patience, $"rank {r} did not hand over round {round}");
                Thread.Sleep(10);
            }

            all[r] = File.ReadAllBytes(FileOf(r));
        }

        return all;
    }

    /// <summary>Every rank's input of call <paramref name="call"/> (<see cref="HostTensors.SignedValues"/>).</summary>
    private static float[][] Inputs(int call, int size, int count, DType dtype)
    {
        var random = new Random(1000 + call);
        return [.. Enumerable.Range(0, size).Select(_ => HostTensors.SignedValues(random, count, dtype))];
    }

    /// <summary>The ranks' inputs summed in fp32 in rank order and rounded once to the dtype, as the kernel does.</summary>
    private static float[] Sum(float[][] inputs, DType dtype)
    {
        var sum = new float[inputs[0].Length];
        for (int i = 0; i < sum.Length; i++)
        {
            float s = 0f;
            foreach (float[] input in inputs)
            {
                s += input[i];
            }

            sum[i] = HostTensors.Rounded(s, dtype);
        }

        return sum;
    }

    private static void Compare(float[] actual, float[] expected, string what)
    {
        for (int i = 0; i < expected.Length; i++)
        {
            Require(actual[i] == expected[i], $"{what}: element {i} is {actual[i]}, the host's sum is {expected[i]}");
        }
    }

    private static void Require(bool condition, string message)
    {
        if (!condition)
        {
            throw new InvalidOperationException(message);
        }
    }
}
