using Celer.Engine.Execution;
using Celer.Models.Weights;

namespace Celer.Engine.Tests.Execution;

/// <summary>What each device platform decides without touching a device (the CUDA one needs no GPU for these).</summary>
public sealed class DevicePlatformTests
{
    [Fact]
    public void Auto_dtype_fp8_caches_and_weight_handling_differ_by_device_as_vllm()
    {
        DevicePlatform cpu = DevicePlatform.For("cpu"), cuda = DevicePlatform.For("CUDA");
        Assert.IsType<CudaPlatform>(DevicePlatform.For("gpu"));

        // An fp32 checkpoint runs in bf16 on a GPU and stays fp32 on the CPU (which computes in fp32 whatever it loads).
        Assert.Equal((DType.F32, DType.BF16), (cpu.AutoDType(DType.F32), cuda.AutoDType(DType.F32)));
        Assert.Equal((DType.F16, DType.F16), (cpu.AutoDType(DType.F16), cuda.AutoDType(DType.F16)));

        Assert.Equal((false, true), (cpu.SupportsFp8KvCache, cuda.SupportsFp8KvCache));
        Assert.Equal((true, false), (cpu.ReadsWeightsInPlace, cuda.ReadsWeightsInPlace));
        Assert.Equal((false, true), (cpu.MakesDummyWeights, cuda.MakesDummyWeights));
        Assert.Equal(4L << 30, cpu.DefaultKvCacheBytes(null!, null!, 0.9f));

        Assert.Contains("expected cpu or cuda", Assert.Throws<ArgumentException>(() => DevicePlatform.For("tpu")).Message, StringComparison.Ordinal);
    }

    [Fact]
    public void An_fp8_cache_on_the_cpu_is_refused_at_load_naming_the_flag()
    {
        var e = Assert.Throws<ModelLoadException>(() => ModelLoader.LoadOffline(new EngineArgs
        {
            Model = Celer.TestSupport.RepoPaths.DefaultModel,
            KvCacheDtype = "fp8",
        }));
        Assert.Contains("--kv-cache-dtype fp8 needs --device cuda", e.Message, StringComparison.Ordinal);
    }
}
