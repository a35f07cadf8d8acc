using Celer.Models.Backend;

namespace Celer.Engine.Tests.Execution;

/// <summary>The decode batch sizes recorded as CUDA graphs, from vLLM's flags, and the size a batch runs padded to.</summary>
public sealed class GraphCaptureSizesTests
{
    [Fact]
    public void The_default_is_vllms_list_up_to_max_num_seqs()
    {
        int[] expected = [1, 2, 4, .. Enumerable.Range(1, 31).Select(i => 8 * i), 256];
        Assert.Equal(expected, new EngineArgs { Model = "m" }.GraphCaptureSizes());
        Assert.Equal([1, 2, 4, 8, 16, 24], new EngineArgs { Model = "m", MaxNumSeqs = 30 }.GraphCaptureSizes());
        // Above 256, every multiple of 16; never above 512 by default.
        IReadOnlyList<int> large = new EngineArgs { Model = "m", MaxNumSeqs = 1024 }.GraphCaptureSizes();
        Assert.Equal([240, 248, 256, 272, 288], large.Skip(32).Take(5));
        Assert.Equal(512, large[^1]);
        Assert.Equal([1, 2, 4, 8, 16, 24, 32, 40], new EngineArgs { Model = "m", MaxCudaGraphCaptureSize = 44 }.GraphCaptureSizes());
    }

    [Fact]
    public void One_value_is_the_largest_size_several_are_the_list()
    {
        Assert.Equal([1, 2, 4, 8, 16, 24], new EngineArgs { Model = "m", CudaGraphSizes = [24] }.GraphCaptureSizes());
        Assert.Equal([1, 3, 64], new EngineArgs { Model = "m", CudaGraphSizes = [64, 1, 3, 3] }.GraphCaptureSizes());
    }

    [Fact]
    public void Sizes_must_be_positive_and_within_the_maximum()
    {
        Assert.Contains("--cuda-graph-sizes", Assert.Throws<ArgumentException>(() => new EngineArgs { Model = "m", CudaGraphSizes = [8, 0] }.Validate()).Message);
        Assert.Contains("--max-cudagraph-capture-size", Assert.Throws<ArgumentException>(() => new EngineArgs { Model = "m", MaxCudaGraphCaptureSize = 0 }.Validate()).Message);
        Assert.Contains("must not exceed", Assert.Throws<ArgumentException>(() => new EngineArgs { Model = "m", CudaGraphSizes = [8, 64], MaxCudaGraphCaptureSize = 32 }.Validate()).Message);
    }

    [Fact]
    public void A_batch_runs_padded_to_the_smallest_recorded_size_that_holds_it()
    {
        var options = new StepGraphOptions([1, 2, 4, 8, 16], 4);
        int[] batches = [1, 2, 3, 4, 5, 8, 9, 16];
        Assert.Equal([1, 2, 4, 4, 8, 8, 16, 16], batches.Select(options.Bucket));
        Assert.Equal(int.MaxValue, options.Bucket(17));
        Assert.Equal(16, options.MaxBatchSize);
    }
}
