using Celer.Engine;
using Celer.Engine.Execution;
using Celer.Models.Backend;
using Celer.Models.Config;
using Celer.Models.Weights;
using Celer.TestSupport;

namespace Celer.Backends.Cuda.Tests;

/// <summary>
/// The host KV tier on the GPU (<c>CudaBackend.KvOffload.cs</c>): pinned host blocks, copies on the transfer stream
/// ordered against the step stream by events, loads polled. Through the whole engine on a fixture model: conversations
/// that return after a device pool too small for all of them load their prefix back from pinned memory, with greedy
/// output token for token that of a pool holding everything (in fp32, where a different row count cannot change the
/// rounding, also that of the small pool recomputing); preemption by swapping gives the same tokens; and at the backend,
/// loads finish in order and can be polled or waited for.
/// </summary>
public sealed class KvOffloadOnGpuTests
{
    private const int BlockSize = 16;
    private static readonly string Model = Path.Combine(RepoPaths.FixtureModels, "llama-gqa-bf16-v4config");

    /// <summary>Bytes of one block on the GPU: keys and values of every layer in the model dtype.</summary>
    private static long BlockBytes(string dtype)
    {
        ModelConfig config = ModelConfig.Load(Model);
        return 2L * config.NumHiddenLayers * BlockSize * config.NumKeyValueHeads * config.HeadDim * (dtype == "float32" ? 4 : 2);
    }

    /// <param name="kvBlocks">Device blocks, the null block included; null: 64 MiB, which holds everything here.</param>
    private static LlmEngine Engine(
        string dtype, int? kvBlocks, int hostBlocks = 0, string preemptionMode = "recompute", bool? asyncScheduling = null, int maxNumSeqs = 4) =>
        ModelLoader.LoadOffline(new EngineArgs
        {
            Model = Model,
            Device = "cuda",
            Dtype = dtype,
            MaxModelLen = 128,
            MaxNumSeqs = maxNumSeqs,
            MaxNumBatchedTokens = 64,
            KvCacheMemoryBytes = kvBlocks * BlockBytes(dtype) ?? 64L << 20,
            KvOffloadSize = hostBlocks * BlockBytes(dtype) / (double)(1L << 30),
            PreemptionMode = preemptionMode,
            AsyncScheduling = asyncScheduling,
            Seed = 1,
        }).Engine;

    private static SamplingParams Greedy(int maxTokens) => new() { Temperature = 0, MaxTokens = maxTokens, IgnoreEos = true };

    private static List<int> Tokens(RequestOutput output) => [.. output.Outputs.SelectMany(o => o.TokenIdsDelta)];

    /// <summary>Five conversations of three turns, one request at a time, round robin (as KvOffloadEngineTests on the CPU).</summary>
    private static List<RequestOutput> Converse(LlmEngine engine)
    {
        var random = new Random(17);
        var histories = Enumerable.Range(0, 5).Select(_ => Enumerable.Range(0, 48).Select(_ => random.Next(engine.VocabSize)).ToList()).ToList();
        var outputs = new List<RequestOutput>();
        for (int turn = 0; turn < 3; turn++)
        {
            for (int c = 0; c < histories.Count; c++)
            {
                if (turn > 0)
                {
                    histories[c].AddRange(Enumerable.Range(0, 8).Select(_ => random.Next(engine.VocabSize)));
                }
                RequestOutput output = engine.Generate([new GenerateRequest($"c{c}t{turn}", [.. histories[c]], Greedy(8))])[0];
                outputs.Add(output);
                histories[c].AddRange(Tokens(output));
            }
        }
        return outputs;
    }

    [Theory]
    [InlineData("float32", false)]
    [InlineData("float32", true)]
    [InlineData("auto", true)]
    public void Returning_conversations_load_their_prefix_from_pinned_memory_with_identical_greedy_output(string dtype, bool asyncScheduling)
    {
        Gpu.Require();
        List<RequestOutput> reference;
        using (LlmEngine everything = Engine(dtype, kvBlocks: null, asyncScheduling: asyncScheduling))
        {
            reference = Converse(everything);
        }
        using LlmEngine offload = Engine(dtype, kvBlocks: 10, hostBlocks: 64, asyncScheduling: asyncScheduling);
        List<RequestOutput> offloaded = Converse(offload);

        for (int i = 0; i < reference.Count; i++)
        {
            Assert.True(Tokens(reference[i]).SequenceEqual(Tokens(offloaded[i])), $"turn {i}: the host tier's output differs");
        }
        Assert.All(offloaded.Skip(5), o => Assert.True(o.NumCachedTokens >= 48, $"{o.RequestId}: {o.NumCachedTokens} cached tokens"));
        KvOffloadTotals tier = offload.Stats.KvOffload!;
        Assert.Equal(offloaded.Skip(5).Sum(o => (long)o.NumCachedTokens), tier.Counters.Hits);
        Assert.Equal(tier.Counters.LoadedBlocks * BlockBytes(dtype), tier.LoadBytes);

        if (dtype == "float32")
        {
            using LlmEngine recompute = Engine(dtype, kvBlocks: 10, asyncScheduling: asyncScheduling);
            List<RequestOutput> recomputed = Converse(recompute);
            for (int i = 0; i < reference.Count; i++)
            {
                Assert.True(Tokens(reference[i]).SequenceEqual(Tokens(recomputed[i])), $"turn {i}: the small pool's output differs");
            }
        }
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void Preemption_by_swapping_gives_identical_greedy_output_on_the_gpu(bool asyncScheduling)
    {
        Gpu.Require();
        var random = new Random(23);
        List<GenerateRequest> requests = [.. Enumerable.Range(0, 6).Select(i => new GenerateRequest(
            $"r{i}", [.. Enumerable.Range(0, 30 + i).Select(_ => random.Next(500))], Greedy(64)))];
        IReadOnlyList<RequestOutput> expected;
        using (LlmEngine everything = Engine("float32", kvBlocks: null, maxNumSeqs: 6, asyncScheduling: asyncScheduling))
        {
            expected = everything.Generate(requests);
        }

        using LlmEngine swapping = Engine("float32", kvBlocks: 10, hostBlocks: 64, preemptionMode: "swap", asyncScheduling: asyncScheduling, maxNumSeqs: 6);
        IReadOnlyList<RequestOutput> outputs = swapping.Generate(requests);

        for (int i = 0; i < requests.Count; i++)
        {
            Assert.True(Tokens(expected[i]).SequenceEqual(Tokens(outputs[i])), $"request {i}: the swapped run's output differs");
        }
        Assert.True(swapping.Stats.NumPreemptions > 0, "the pool was meant to be small enough to preempt");
        Assert.True(swapping.Stats.KvOffload!.Counters.LoadedBlocks > 0, "preempted requests were meant to come back from the host tier");
    }

    /// <summary>
    /// The copies themselves, on each backend and KV cache type: a 40-token context written into blocks 1..3, stored into
    /// host blocks in another order and loaded back into blocks 5..7; a decode row attending over the copies gives exactly
    /// what the same row gives over the originals (the partial third block included), and copies loaded into the wrong
    /// places do not. The CPU rows run on any machine.
    /// </summary>
    [Theory]
    [InlineData("cpu", DType.F32, null)]
    [InlineData("cpu", DType.F32, DType.F8E4M3)]
    [InlineData("cuda", DType.F32, null)]
    [InlineData("cuda", DType.BF16, null)]
    [InlineData("cuda", DType.BF16, DType.F8E4M3)]
    public void Blocks_stored_and_loaded_elsewhere_attend_exactly_as_the_originals(string device, DType dtype, DType? kvCache)
    {
        if (device == "cuda")
        {
            Gpu.Require();
        }

        const int heads = 4, kvHeads = 2, headDim = 32, context = 40, maxBlocks = 4;
        int width = (heads + 2 * kvHeads) * headDim;
        var spec = new AttentionSpec(heads, kvHeads, headDim, 1f / MathF.Sqrt(headDim), 0);
        var rope = new RopeSpec([.. Enumerable.Range(0, headDim / 2).Select(i => (float)(1.0 / Math.Pow(10000, 2.0 * i / headDim)))], headDim, 1f, 256);
        using IModelBackend b = device == "cuda" ? new CudaBackend(Gpu.Device, dtype, kvCacheDType: kvCache) : new Celer.Backends.Cpu.CpuBackend(dtype, kvCache);
        using var h = new HostTensors(29);
        // ForSequences numbers blocks per sequence: sequence 0 owns 1..4, sequence 1 owns 5..8.
        b.AllocateKvCache(1, 1 + 2 * maxBlocks, BlockSize, spec);
        b.AllocateHostKvCache(maxBlocks);
        b.BeginStep(ForwardBatch.ForSequences([(0, context)], maxBlocks, BlockSize));
        b.PrepareAttention(0, b.LoadWeight(h.Random("context", DType.F32, 1f, context, width)), context, spec, rope, null, null, 1e-6f,
            b.Allocate("q", b.ActivationDType, context, heads * headDim));
        float[] row = [.. Enumerable.Range(0, width).Select(i => MathF.Sin(i * 0.37f) * 2)];

        float[] DecodeBothSequences()
        {
            b.BeginStep(ForwardBatch.ForSequences([(context, 1), (context, 1)], maxBlocks, BlockSize));
            Tensor q = b.Allocate("qs", b.ActivationDType, 2, heads * headDim);
            b.PrepareAttention(0, b.LoadWeight(h.FromValues("row", [.. row, .. row], 2, width)), 2, spec, rope, null, null, 1e-6f, q);
            Tensor output = b.Allocate("o", b.ActivationDType, 2, heads * headDim);
            b.Attention(0, q, output, spec);
            return HostTensors.Read(b, output, 2);
        }

        b.StoreKvBlocks([new KvBlockCopy(1, 2), new KvBlockCopy(2, 0), new KvBlockCopy(3, 1)]);
        Assert.True(b.KvLoadsDone(b.LoadKvBlocks([new KvBlockCopy(5, 2), new KvBlockCopy(6, 0), new KvBlockCopy(7, 1)]), wait: true));
        float[] output = DecodeBothSequences();
        int n = heads * headDim;
        Assert.Equal(output[..n], output[n..]);

        // Block 2's keys and values in place of block 1's: another set of keys (swapping the two blocks instead would give
        // the same set, which attention cannot tell apart: the keys carry their positions' RoPE from when they were written).
        Assert.True(b.KvLoadsDone(b.LoadKvBlocks([new KvBlockCopy(5, 0)]), wait: true));
        float[] scrambled = DecodeBothSequences();
        Assert.NotEqual(scrambled[..n], scrambled[n..]);
    }

    /// <summary>
    /// The backend alone: loads finish in the order queued, a poll never blocks, a wait returns once the load is done, and
    /// copies of adjacent blocks (one run) and scattered ones mix in one batch.
    /// </summary>
    [Fact]
    public void Loads_finish_in_order_and_can_be_polled_or_waited_for()
    {
        Gpu.Require();
        using var backend = new CudaBackend(Gpu.Device, DType.BF16);
        backend.AllocateKvCache(numLayers: 4, numBlocks: 512, BlockSize, new AttentionSpec(NumHeads: 8, NumKvHeads: 8, HeadDim: 128, Scale: 0.088f, SlidingWindow: 0));
        backend.AllocateHostKvCache(512);
        Assert.Throws<ArgumentOutOfRangeException>(() => backend.StoreKvBlocks([new KvBlockCopy(1, 512)]));

        backend.StoreKvBlocks([.. Enumerable.Range(1, 255).Select(b => new KvBlockCopy(b, b - 1)), new KvBlockCopy(300, 400)]);
        long first = backend.LoadKvBlocks([.. Enumerable.Range(0, 255).Select(h => new KvBlockCopy(256 + h, h))]);
        long second = backend.LoadKvBlocks([new KvBlockCopy(511, 400), new KvBlockCopy(7, 3)]);
        Assert.True(second > first);

        Assert.True(backend.KvLoadsDone(second, wait: true));
        Assert.True(backend.KvLoadsDone(first, wait: false));
        Assert.True(backend.KvLoadsDone(second, wait: false));
    }
}
