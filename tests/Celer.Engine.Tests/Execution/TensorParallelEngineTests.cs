using Celer.Engine.Execution;
using Celer.Models.Weights;
using Celer.TestSupport;

namespace Celer.Engine.Tests.Execution;

/// <summary>
/// <c>--tensor-parallel-size</c> through the whole engine on the CPU (ranks as threads of the process, each a shard of
/// the default model on its own backend and KV cache): greedy outputs of a batch with chunked prefill are token for
/// token those of one rank, with KV heads split (2 ranks) and replicated (4 ranks, more than its 2 KV heads); what cannot
/// be split yet is refused by name.
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

    private static List<string> Generate(int ranks)
    {
        (LlmEngine engine, _, _) = ModelLoader.LoadOffline(Args(ranks));
        using (engine)
        {
            var random = new Random(5);
            var requests = Enumerable.Range(0, 4).Select(i => new GenerateRequest(
                $"r{i}", [.. Enumerable.Range(0, 15 * (i + 2)).Select(_ => random.Next(1, 4000))],
                new SamplingParams { Temperature = 0, MaxTokens = 20, IgnoreEos = true })).ToList();
            return [.. engine.Generate(requests).Select(o => string.Join(' ', o.Outputs.SelectMany(c => c.TokenIdsDelta)))];
        }
    }

    [Theory]
    [InlineData(2)]
    [InlineData(4)]
    public void Split_ranks_generate_the_tokens_of_one(int ranks) => Assert.Equal(Generate(1), Generate(ranks));

    [Fact]
    public void What_cannot_be_split_yet_is_refused_by_name()
    {
        var gpu = Assert.Throws<ModelLoadException>(() => ModelLoader.LoadOffline(Args(2, device: "cuda")));
        Assert.Contains("NCCL", gpu.Message, StringComparison.Ordinal);

        var uneven = Assert.Throws<ModelLoadException>(() => ModelLoader.LoadOffline(Args(3)));
        Assert.Contains("num_attention_heads 8 does not divide into a tensor-parallel group of 3", uneven.Message, StringComparison.Ordinal);

        var offload = Assert.Throws<ModelLoadException>(() => ModelLoader.LoadOffline(Args(2) with { KvOffloadSize = 0.01 }));
        Assert.Contains("--kv-offload-size", offload.Message, StringComparison.Ordinal);

        Assert.Throws<ArgumentException>(() => ModelLoader.LoadOffline(Args(0)));
    }
}
