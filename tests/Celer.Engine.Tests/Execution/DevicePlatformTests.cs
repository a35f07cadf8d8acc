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

        // FP8 and bf16 caches: the CPU takes them with any model; the GPU's FP8 needs a 16-bit model, its bf16 a bf16 one.
        Assert.Equal((null, null, null), (cpu.KvCacheRefusal(DType.F8E4M3, DType.F32), cpu.KvCacheRefusal(DType.BF16, DType.F32), cuda.KvCacheRefusal(DType.F8E5M2, DType.BF16)));
        Assert.Contains("bf16 or fp16", cuda.KvCacheRefusal(DType.F8E4M3, DType.F32), StringComparison.Ordinal);
        Assert.Null(cuda.KvCacheRefusal(DType.BF16, DType.BF16));
        Assert.Contains("--dtype bfloat16", cuda.KvCacheRefusal(DType.BF16, DType.F16), StringComparison.Ordinal);
        Assert.Equal((true, false), (cpu.ReadsWeightsInPlace, cuda.ReadsWeightsInPlace));
        Assert.Equal((false, true), (cpu.MakesDummyWeights, cuda.MakesDummyWeights));
        Assert.Equal(4L << 30, cpu.DefaultKvCacheBytes(null!, null!, 0.9f));

        Assert.Contains("expected cpu or cuda", Assert.Throws<ArgumentException>(() => DevicePlatform.For("tpu")).Message, StringComparison.Ordinal);
    }
}
