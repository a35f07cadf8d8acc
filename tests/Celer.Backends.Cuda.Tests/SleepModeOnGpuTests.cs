using Celer.Engine;
using Celer.Engine.Execution;
using Celer.TestSupport;

namespace Celer.Backends.Cuda.Tests;

/// <summary>
/// Sleep mode on the GPU (<c>VirtualMemoryRegion</c>, <c>CudaBackend.Sleep.cs</c>) through the serving engine with decode
/// graphs on: the weights and KV cache in virtual-memory regions give the same greedy tokens as plain allocations; at
/// level 1 (weights backed up in pinned memory) and level 2 (weights discarded, reloaded from the checkpoint into the same
/// addresses) the card gets at least the KV cache's memory back, and the request that wakes the model, replaying graphs
/// recorded before the sleep, gets the tokens it got before. Unquantized, FP8, 4-bit and MoE checkpoints (each stores its
/// weights through another load path), and dummy weights.
/// </summary>
public sealed class SleepModeOnGpuTests
{
    private static LoadedModel Load(string model, string loadFormat, bool sleepMode) => ModelLoader.Load(new EngineArgs
    {
        Model = Path.Combine(RepoPaths.FixtureModels, model),
        Device = "cuda",
        LoadFormat = loadFormat,
        MaxModelLen = 128,
        MaxNumSeqs = 4,
        MaxNumBatchedTokens = 128,
        KvCacheMemoryBytes = 256L << 20,
        Seed = 1,
        EnableSleepMode = sleepMode,
    });

    /// <summary>
    /// Three prompts one after another (the same batches every run: a 4-bit GEMM's rounding depends on the row count), each
    /// decode step replaying the recorded graph of batch 1.
    /// </summary>
    private static async Task<string> Run(AsyncLlmEngine engine, string tag)
    {
        var random = new Random(29);
        var outputs = new List<string>();
        for (int i = 0; i < 3; i++)
        {
            var request = new GenerateRequest($"{tag}-{i}", [.. Enumerable.Range(0, 20 + (7 * i)).Select(_ => random.Next(1, 400))],
                new SamplingParams { Temperature = 0, MaxTokens = 24, IgnoreEos = true });
            var tokens = new List<int>();
            await foreach (RequestOutput output in engine.GenerateAsync(request, TestContext.Current.CancellationToken))
            {
                tokens.AddRange(output.Outputs.SelectMany(o => o.TokenIdsDelta));
            }

            outputs.Add(string.Join(' ', tokens));
        }

        return string.Join(" | ", outputs);
    }

    private static long FreeBytes()
    {
        Gpu.Device.MakeCurrent();
        return Gpu.Device.MemoryInfo().Free;
    }

    [Theory]
    [InlineData("llama-gqa-bf16-v4config", "auto")]
    [InlineData("llama-gqa-bf16-v4config", "dummy")]
    [InlineData("llama-fp8-channel-dynamic", "auto")]
    [InlineData("llama-awq-int4-g16", "auto")]
    [InlineData("qwen3-moe-bf16", "auto")]
    public async Task Each_level_gives_memory_back_and_wakes_to_the_same_greedy_tokens(string model, string loadFormat)
    {
        Gpu.Require();
        string expected;
        await using (LoadedModel plain = Load(model, loadFormat, sleepMode: false))
        {
            expected = await Run(plain.Engine, "plain");
        }

        await using LoadedModel sleepy = Load(model, loadFormat, sleepMode: true);
        AsyncLlmEngine engine = sleepy.Engine;
        Assert.Equal(expected, await Run(engine, "awake"));
        foreach (int level in new[] { 1, 2, 1 })
        {
            long awake = FreeBytes();
            await engine.SleepAsync(level).WaitAsync(TimeSpan.FromSeconds(60), TestContext.Current.CancellationToken);
            long freed = FreeBytes() - awake, held = engine.BytesToWake;
            Assert.True(engine.IsSleeping);
            // The weights' and the KV cache's regions, each at least one 64 MiB chunk of physical memory.
            Assert.True(held >= 128L << 20 && freed >= held, $"level {level}: {freed} bytes came back of the {held} the model held");

            Assert.True(expected == await Run(engine, $"woken{level}"), $"level {level}: the woken model's tokens differ");
            Assert.False(engine.IsSleeping);
            Assert.True(awake - FreeBytes() < 64L << 20, $"level {level}: waking took {awake - FreeBytes()} bytes more than the model held before");
        }
    }
}
