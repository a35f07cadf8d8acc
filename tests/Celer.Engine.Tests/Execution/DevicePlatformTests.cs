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

        // FP8 caches: the CPU takes them with any model; the GPU's attention kernels need a 16-bit model.
        Assert.Equal((null, null), (cpu.Fp8KvCacheRefusal(DType.F32), cuda.Fp8KvCacheRefusal(DType.BF16)));
        Assert.Contains("bf16 or fp16", cuda.Fp8KvCacheRefusal(DType.F32), StringComparison.Ordinal);
        Assert.Equal((true, false), (cpu.ReadsWeightsInPlace, cuda.ReadsWeightsInPlace));
        Assert.Equal((false, true), (cpu.MakesDummyWeights, cuda.MakesDummyWeights));
        Assert.Equal(4L << 30, cpu.DefaultKvCacheBytes(null!, null!, 0.9f));

        Assert.Contains("expected cpu or cuda", Assert.Throws<ArgumentException>(() => DevicePlatform.For("tpu")).Message, StringComparison.Ordinal);
    }
}
