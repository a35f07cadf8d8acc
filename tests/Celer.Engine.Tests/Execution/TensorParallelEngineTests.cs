using System.Diagnostics;
using Celer.Engine.Distributed;
using Celer.Engine.Execution;
using Celer.Models.Weights;
using Celer.TestSupport;

namespace Celer.Engine.Tests.Execution;

/// <summary>
/// <c>--tensor-parallel-size</c> through the whole engine on the CPU, rank 0 in the test process and every other rank a
/// worker process (this test program started again), each a shard of the default model on its own backend and KV cache,
/// meeting in shared-memory collectives: greedy outputs of a batch with chunked prefill are token for token those of one
/// rank, with KV heads split (2 ranks) and replicated (4 ranks, more than its 2 KV heads); a worker that dies turns the
/// engine dead instead of hanging it; what cannot be split yet is refused by name.
/// </summary>
public sealed class TensorParallelEngineTests
{
    private static EngineArgs Args(int ranks, string device = "cpu") => new()
    {
        Model = RepoPaths.DefaultModel,
        Device = device,
        MaxModelLen = 256,
        MaxNumSeqs = 4,
        MaxNumBatchedTokens = 48,   // prompts of 60 and 75 tokens are prefilled in chunks, beside decodes
        KvCacheMemoryBytes = 16L << 20,
        Seed = 1,
        TensorParallelSize = ranks,
    };

    private static List<GenerateRequest> Requests(int maxTokens)
    {
        var random = new Random(5);
        return [.. Enumerable.Range(0, 4).Select(i => new GenerateRequest(
            $"r{i}", [.. Enumerable.Range(0, 15 * (i + 2)).Select(_ => random.Next(1, 4000))],
            new SamplingParams { Temperature = 0, MaxTokens = maxTokens, IgnoreEos = true }))];
    }

    private static List<string> Generate(int ranks)
    {
        (LlmEngine engine, _, _) = ModelLoader.LoadOffline(Args(ranks));
        using (engine)
        {
            return [.. engine.Generate(Requests(20)).Select(o => string.Join(' ', o.Outputs.SelectMany(c => c.TokenIdsDelta)))];
        }
    }

    [Theory]
    [InlineData(2)]
    [InlineData(4)]
    public void Split_ranks_generate_the_tokens_of_one(int ranks) => Assert.Equal(Generate(1), Generate(ranks));

    /// <summary>
    /// Several nodes on one host: node 0 is this process's engine (with a local worker when each node runs two ranks),
    /// the other node a <see cref="HeadlessNode"/> whose workers reach node 0 over TCP only (the step messages on the
    /// master port, the collectives on the next), as they would from another host.
    /// </summary>
    [Theory]
    [InlineData(2)]
    [InlineData(4)]
    public async Task Ranks_on_two_nodes_generate_the_tokens_of_one(int ranks)
    {
        int port = FreePortPair();
        EngineArgs node0 = Args(ranks) with { NNodes = 2, MasterPort = port };
        using var stop = new CancellationTokenSource();
        Task<int> node1 = Task.Run(() => HeadlessNode.Run(node0 with { NodeRank = 1 }, _ => { }, stop.Token), TestContext.Current.CancellationToken);
        List<string> split;
        (LlmEngine engine, _, _) = ModelLoader.LoadOffline(node0);
        using (engine)
        {
            split = [.. engine.Generate(Requests(20)).Select(o => string.Join(' ', o.Outputs.SelectMany(c => c.TokenIdsDelta)))];
        }

        // Node 0 closed the group: node 1's workers exit cleanly, and the node with them.
        Assert.Equal(0, await node1.WaitAsync(TimeSpan.FromSeconds(60), TestContext.Current.CancellationToken));
        Assert.Equal(Generate(1), split);
    }

    /// <summary>A port p with p + 1 free too (the master port and the collectives').</summary>
    private static int FreePortPair()
    {
        for (int attempt = 0; attempt < 100; attempt++)
        {
            using var first = new System.Net.Sockets.TcpListener(System.Net.IPAddress.Loopback, 0);
            first.Start();
            int port = ((System.Net.IPEndPoint)first.LocalEndpoint).Port;
            try
            {
                using var second = new System.Net.Sockets.TcpListener(System.Net.IPAddress.Loopback, port + 1);
                second.Start();
                return port;
            }
            catch (System.Net.Sockets.SocketException)
            {
                // Taken: try another.
            }
        }

        throw new InvalidOperationException("No two consecutive free ports on the loopback interface.");
    }

    /// <param name="nodes">1: the worker is node 0's, fed through shared memory; 2: it is the other node's, fed over TCP.</param>
    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    public async Task A_worker_that_dies_turns_the_engine_dead_instead_of_hanging_it(int nodes)
    {
        EngineArgs args = Args(2) with { NNodes = nodes, MasterPort = nodes > 1 ? FreePortPair() : 29501 };
        using var stop = new CancellationTokenSource();
        Task<int>? node1 = nodes > 1 ? Task.Run(() => HeadlessNode.Run(args with { NodeRank = 1 }, _ => { }, stop.Token), TestContext.Current.CancellationToken) : null;
        await using LoadedModel loaded = ModelLoader.Load(args);
        AsyncLlmEngine engine = loaded.Engine;
        GenerateRequest first = Requests(4)[0];
        await foreach (RequestOutput _ in engine.GenerateAsync(first, TestContext.Current.CancellationToken))
        {
        }

        // The worker's process: the one child of this process started with the worker's arguments.
        using Process worker = WorkerChildren().Single();
        worker.Kill();
        var clock = Stopwatch.StartNew();
        while (!engine.IsDead && clock.Elapsed < TimeSpan.FromSeconds(30))
        {
            await Task.Delay(20, TestContext.Current.CancellationToken);
        }

        Assert.True(engine.IsDead, "the engine still serves 30 s after its worker died");
        Assert.True(clock.Elapsed < TimeSpan.FromSeconds(10), $"the engine took {clock.Elapsed.TotalSeconds:F1} s to notice");
        var refused = await Assert.ThrowsAsync<EngineDeadException>(async () =>
        {
            await foreach (RequestOutput _ in engine.GenerateAsync(Requests(4)[1], TestContext.Current.CancellationToken))
            {
            }
        });
        Assert.Contains("no new requests", refused.Message, StringComparison.Ordinal);
        if (node1 is not null)
        {
            // The node whose worker failed ends too, with the failure's exit code.
            Assert.NotEqual(0, await node1.WaitAsync(TimeSpan.FromSeconds(30), TestContext.Current.CancellationToken));
        }
    }

    /// <summary>This process's live children that are tensor-parallel workers (Linux: /proc's parent ids and command lines).</summary>
    private static IEnumerable<Process> WorkerChildren()
    {
        foreach (string dir in Directory.EnumerateDirectories("/proc"))
        {
            if (!int.TryParse(Path.GetFileName(dir), out int pid))
            {
                continue;
            }

            string status, commandLine;
            try
            {
                status = File.ReadAllText(Path.Combine(dir, "status"));
                commandLine = File.ReadAllText(Path.Combine(dir, "cmdline"));
            }
            catch (IOException)
            {
                continue;   // gone meanwhile
            }

            bool ours = status.Split('\n').Any(line => line == $"PPid:\t{Environment.ProcessId}");
            if (ours && commandLine.Split('\0').Contains(TensorParallelWorker.Command))
            {
                yield return Process.GetProcessById(pid);
            }
        }
    }

    [Fact]
    public void What_cannot_be_split_yet_is_refused_by_name()
    {
        // This machine has no GPU (on a GPU machine with fewer than two, the same): a rank per GPU is asked for.
        if (Celer.Backends.Cuda.CudaDevice.Count() < 2)
        {
            var gpu = Assert.Throws<ModelLoadException>(() => ModelLoader.LoadOffline(Args(2, device: "cuda")));
            Assert.Contains("each node runs 2 ranks, a GPU each", gpu.Message, StringComparison.Ordinal);
        }

        var uneven = Assert.Throws<ModelLoadException>(() => ModelLoader.LoadOffline(Args(3)));
        Assert.Contains("num_attention_heads 8 does not divide into a tensor-parallel group of 3", uneven.Message, StringComparison.Ordinal);

        var offload = Assert.Throws<ModelLoadException>(() => ModelLoader.LoadOffline(Args(2) with { KvOffloadSize = 0.01 }));
        Assert.Contains("--kv-offload-size", offload.Message, StringComparison.Ordinal);

        Assert.Throws<ArgumentException>(() => ModelLoader.LoadOffline(Args(0)));
        var ray = Assert.Throws<ArgumentException>(() => ModelLoader.LoadOffline(Args(2) with { DistributedExecutorBackend = "ray" }));
        Assert.Contains("ray is not supported", ray.Message, StringComparison.Ordinal);
        var uni = Assert.Throws<ArgumentException>(() => ModelLoader.LoadOffline(Args(2) with { DistributedExecutorBackend = "uni" }));
        Assert.Contains("use mp", uni.Message, StringComparison.Ordinal);
    }
}
