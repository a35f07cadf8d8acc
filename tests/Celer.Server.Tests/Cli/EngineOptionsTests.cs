using System.CommandLine;
using Celer.Cli;

namespace Celer.Server.Tests.Cli;

/// <summary>The engine flags: vLLM's CUDA-graph flags as vLLM spells them, and help texts that state the real defaults.</summary>
public sealed class EngineOptionsTests
{
    private static Celer.Engine.EngineArgs Parse(params string[] args)
    {
        var options = new EngineOptions();
        var command = new RootCommand();
        options.AddTo(command);
        ParseResult result = command.Parse(args);
        Assert.Empty(result.Errors);
        return options.ToEngineArgs(result, "model");
    }

    [Fact]
    public void Cuda_graph_sizes_take_a_list_or_one_largest_size()
    {
        Assert.Equal([1, 2, 8], Parse("--cuda-graph-sizes", "8", "1", "2").GraphCaptureSizes());
        Assert.Equal([1, 2, 4, 8, 16], Parse("--cuda-graph-sizes", "16").GraphCaptureSizes());
        Assert.Equal([1, 2, 4, 8], Parse("--max-cudagraph-capture-size", "8").GraphCaptureSizes());
        Celer.Engine.EngineArgs defaults = Parse();
        Assert.Null(defaults.CudaGraphSizes);
        Assert.Equal(256, defaults.GraphCaptureSizes()[^1]);
    }

    [Fact]
    public void Quantization_is_spelled_as_vllm_spells_it()
    {
        Assert.Equal("fp8", Parse("--quantization", "fp8").Quantization);
        Assert.Equal("compressed-tensors", Parse("-q", "compressed-tensors").Quantization);
        Assert.Null(Parse().Quantization);
    }

    [Fact]
    public void The_host_kv_tier_takes_vllms_flag_names()
    {
        Assert.Equal(0, Parse().KvOffloadSize);
        Assert.Equal("recompute", Parse().PreemptionMode);
        Assert.Equal(2.5, Parse("--kv-offload-size", "2.5").KvOffloadSize);
        Assert.Equal(8, Parse("--kv-offloading-size", "8").KvOffloadSize);
        Assert.Equal("swap", Parse("--kv-offload-size", "1", "--preemption-mode", "swap").PreemptionMode);

        var options = new EngineOptions();
        var command = new RootCommand();
        options.AddTo(command);
        Assert.NotEmpty(command.Parse(["--preemption-mode", "drop"]).Errors);
        // A negative size parses, and is refused by name when the engine's arguments are checked.
        var negative = options.ToEngineArgs(command.Parse(["--kv-offload-size", "-1"]), "model");
        Assert.Contains("--kv-offload-size", Assert.Throws<ArgumentException>(negative.Validate).Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Help_texts_state_the_real_defaults()
    {
        var options = new EngineOptions();
        Assert.Contains($"default: {Celer.Engine.EngineArgs.DefaultMaxNumBatchedTokens}", options.MaxNumBatchedTokens.Description, StringComparison.Ordinal);
        Assert.Contains($"{Celer.Engine.Execution.ModelLoader.DefaultCpuKvCacheBytes >> 30} GiB on the CPU", options.KvCacheMemory.Description, StringComparison.Ordinal);
        Assert.Contains("model directory's name", options.ServedModelName.Description, StringComparison.Ordinal);
        Assert.Equal(new Celer.Engine.EngineArgs { Model = "m" }.MaxNumSeqs, Parse().MaxNumSeqs);
        Assert.Equal(new Celer.Engine.EngineArgs { Model = "m" }.GpuMemoryUtilization, Parse().GpuMemoryUtilization);
        Assert.Equal(new Celer.Engine.EngineArgs { Model = "m" }.BlockSize, Parse().BlockSize);
    }
}
