using Celer.Engine.Execution;
using Celer.TestSupport;

namespace Celer.Engine.Tests.Execution;

/// <summary>
/// Managed allocations of a decode step on the CPU backend, everything on the engine's path included: scheduler,
/// runner, the CPU kernels' parallel loops, sampler, output processing and detokenization, and the caller's own
/// accumulation of the outputs. Garbage per step turns into collector pauses between steps; this budget catches what
/// brings it back (a closure per kernel, concurrent dictionaries per step, LINQ on the hot path).
/// </summary>
[Collection(HotPathAllocationTests.Alone)]
public sealed class HotPathAllocationTests
{
    /// <summary>Other tests' allocations would count too: this one runs while no other test does.</summary>
    public const string Alone = "allocation measurement";

    [CollectionDefinition(Alone, DisableParallelization = true)]
    public sealed class AloneCollection;

    // Measured at 14.7 KB per step of 8 sequences (the prefill step spread over the rest), from ~35 KB before the
    // kernels' loops became structs, the runner's host sampling lost its concurrent dictionaries and ByteLevel decoding
    // stopped making a string per token. Most of what is left is the incremental detokenizer (two token windows
    // decoded per token, as vLLM's does) and the outputs handed to the caller each step. The budget leaves 25 %.
    private const long BytesPerStepBudget = 18_500;

    [Fact]
    public void A_decode_step_of_eight_sequences_allocates_less_than_the_budget()
    {
        var args = new EngineArgs { Model = RepoPaths.DefaultModel, MaxModelLen = 512, MaxNumSeqs = 8, Seed = 1 };
        using LlmEngine engine = ModelLoader.LoadOffline(args).Engine;
        GenerateRequest[] Requests(string tag, int outputTokens) =>
        [
            .. Enumerable.Range(0, 8).Select(i => new GenerateRequest(
                $"{tag}{i}", [.. Enumerable.Range(1, 24).Select(t => t * 7 + i)],
                new SamplingParams { Temperature = 0.8f, TopP = 0.95f, MaxTokens = outputTokens, IgnoreEos = true })),
        ];

        engine.Generate(Requests("warmup", 64));   // JIT, thread-local scratch, worker threads
        const int Steps = 300;
        long before = GC.GetTotalAllocatedBytes(precise: true);
        IReadOnlyList<RequestOutput> outputs = engine.Generate(Requests("measured", Steps));
        long perStep = (GC.GetTotalAllocatedBytes(precise: true) - before) / Steps;

        Assert.All(outputs, o => Assert.Equal(Steps, o.Outputs.Single().TokenIdsDelta.Count));
        Assert.True(perStep < BytesPerStepBudget, $"{perStep} bytes per decode step of 8 sequences; the budget is {BytesPerStepBudget}");
    }
}
