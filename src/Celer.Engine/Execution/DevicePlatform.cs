using Celer.Backends.Cpu;
using Celer.Backends.Cuda;
using Celer.Backends.Cuda.Interop;
using Celer.Models.Backend;
using Celer.Models.Config;
using Celer.Models.Quantization;
using Celer.Models.Weights;

namespace Celer.Engine.Execution;

/// <summary>
/// What loading a model needs from a device beyond its operators (vLLM's <c>Platform</c>): making the backend, the
/// dtype an "auto" checkpoint runs in, where dummy weights are made, whether the runner must keep the checkpoint
/// mapped, FP8 caches, and the KV cache's default budget. <see cref="ModelLoader"/> asks the platform instead of
/// testing backend types.
/// </summary>
internal abstract class DevicePlatform
{
    /// <summary>The platform of <c>--device</c>.</summary>
    public static DevicePlatform For(string device) => device.ToLowerInvariant() switch
    {
        "cpu" => new CpuPlatform(),
        "cuda" or "gpu" => new CudaPlatform(),
        _ => throw new ArgumentException($"Unknown device '{device}'; expected cpu or cuda.", nameof(device)),
    };

    /// <summary>The dtype a checkpoint stored in <paramref name="stored"/> runs in under <c>--dtype auto</c>.</summary>
    public abstract DType AutoDType(DType stored);

    /// <summary>Whether the backend makes dummy weights itself (the host then only describes them).</summary>
    public abstract bool MakesDummyWeights { get; }

    /// <summary>Whether the backend computes straight from the memory-mapped checkpoint, which must then stay open.</summary>
    public abstract bool ReadsWeightsInPlace { get; }

    /// <summary>
    /// Why a KV cache of <paramref name="cache"/> (<c>--kv-cache-dtype bfloat16|fp8…</c>) cannot go with a model served
    /// in <paramref name="modelDType"/> here, to follow the flag in the error; null when it can.
    /// </summary>
    public abstract string? KvCacheRefusal(DType cache, DType modelDType);

    /// <summary>Why a checkpoint quantized as <paramref name="quantization"/> cannot run here; null when it can.</summary>
    public abstract string? QuantizationRefusal(QuantizationConfig quantization);

    /// <summary>
    /// Whether a W8A8 checkpoint's FP8 weights reach the backend as stored, with their scales, for FP8 GEMMs (else
    /// dequantized at load, see <see cref="Fp8WeightSource"/>).
    /// </summary>
    public abstract bool MultipliesFp8 { get; }

    /// <summary>
    /// Whether integer weight-only checkpoints' weights reach the backend unpacked (<see cref="WeightTensor.Packed"/>) for
    /// its 4-bit kernels to repack (else dequantized at load, see <see cref="IntWeightSource"/>).
    /// </summary>
    public abstract bool MultipliesInt4 { get; }

    /// <param name="sleepMode">Put the weights and KV cache where the backend can release them (--enable-sleep-mode).</param>
    /// <summary>The GPUs this process sees; null on the CPU, which is one device however many ranks share it.</summary>
    public virtual int? DeviceCount => null;

    /// <param name="device">The GPU's ordinal on this host (a tensor-parallel rank's); the CPU has one device.</param>
    public abstract IModelBackend CreateBackend(DType dtype, DType? kvCacheDType, bool sleepMode, int device = 0);

    /// <summary>
    /// A second backend on <paramref name="target"/>'s device, for a draft model (speculative decoding): its own weights
    /// and KV cache, and the target's stream, so the draft's work queues in order with the target's.
    /// </summary>
    public abstract IModelBackend CreateDraftBackend(IModelBackend target, DType dtype, DType? kvCacheDType);

    /// <summary>The KV cache's bytes when <c>--kv-cache-memory</c> does not say, once weights and buffers are in place.</summary>
    public abstract long DefaultKvCacheBytes(IModelBackend backend, ModelConfig config, float gpuMemoryUtilization);

    /// <summary>Device memory a model of <paramref name="config"/> allocates after the KV cache (scratch the budget must leave).</summary>
    public virtual long ScratchAfterCache(IModelBackend backend, ModelConfig config) => 0;

    /// <summary>How long padding steps run at startup so the first request meets JIT-optimized kernels (zero: none).</summary>
    public abstract TimeSpan JitWarmUp { get; }

    /// <summary>Startup log lines about choices the backend made while loading (e.g. GEMM kernels measured per shape).</summary>
    public virtual IEnumerable<string> LoadNotes(IModelBackend backend) => [];
}

/// <summary>The CPU: fp32 compute from the mapped checkpoint, a 4 GiB KV cache by default (vLLM's VLLM_CPU_KVCACHE_SPACE).</summary>
internal sealed class CpuPlatform : DevicePlatform
{
    public const long DefaultKvCacheSpace = 4L << 30;

    /// <summary>The CPU computes in fp32 whatever the weights' dtype, so the stored dtype stays.</summary>
    public override DType AutoDType(DType stored) => stored;

    public override bool MakesDummyWeights => false;

    public override bool ReadsWeightsInPlace => true;

    /// <summary>The CPU computes in fp32 whatever the model dtype and decodes bf16 and FP8 caches block by block.</summary>
    public override string? KvCacheRefusal(DType cache, DType modelDType) => null;

    /// <summary>FP8 checkpoints run with their weights dequantized at load and W8A8 inputs quantized as their kernels do.</summary>
    public override string? QuantizationRefusal(QuantizationConfig quantization) => null;

    public override bool MultipliesFp8 => false;

    /// <summary>4-bit weights stay packed (a quarter of bf16's bytes, an eighth of fp32's) and dequantize inside the matmul.</summary>
    public override bool MultipliesInt4 => true;

    /// <summary>The CPU backend releases its KV cache without being told in advance; its weights are host memory.</summary>
    public override IModelBackend CreateBackend(DType dtype, DType? kvCacheDType, bool sleepMode, int device = 0) => new CpuBackend(dtype, kvCacheDType);

    public override IModelBackend CreateDraftBackend(IModelBackend target, DType dtype, DType? kvCacheDType) => new CpuBackend(dtype, kvCacheDType);

    public override long DefaultKvCacheBytes(IModelBackend backend, ModelConfig config, float gpuMemoryUtilization) => DefaultKvCacheSpace;

    /// <summary>
    /// The CPU kernels are C#: until the JIT has recompiled them with profile data (after ~30 calls, in the background)
    /// a step runs several times slower; ~2 s of padding steps get celer-tiny-py's first timed step to steady state.
    /// </summary>
    public override TimeSpan JitWarmUp => TimeSpan.FromSeconds(2);
}

/// <summary>One NVIDIA GPU: bf16 for fp32 checkpoints (as vLLM's auto on cards that have it), dummy weights made on the card.</summary>
internal sealed class CudaPlatform : DevicePlatform
{
    // cuBLAS keeps a workspace per handle and grows it on first use; leave it room.
    private const long CublasReserve = 256L << 20;

    public override DType AutoDType(DType stored) => stored == DType.F32 ? DType.BF16 : stored;

    public override bool MakesDummyWeights => true;

    public override bool ReadsWeightsInPlace => false;

    /// <summary>
    /// The GPU keeps its cache in the model dtype, or in FP8, which the attention kernels dequantize into the 16-bit
    /// model dtype's MMA fragments.
    /// </summary>
    public override string? KvCacheRefusal(DType cache, DType modelDType) => cache switch
    {
        DType.F8E4M3 or DType.F8E5M2 when modelDType == DType.F32 => "goes with a bf16 or fp16 model on a GPU, not --dtype float32",
        DType.BF16 when modelDType != DType.BF16 => $"is the model dtype's cache on a GPU, and this model is served in {modelDType}: use --dtype bfloat16 or --kv-cache-dtype auto",
        _ => null,
    };

    /// <summary>
    /// W8A8 layers run on cuBLASLt's scaled FP8 GEMMs, which take per-row scales of either operand or DeepSeek's blocks
    /// (128 × 128 weight blocks with per-token groups of 128); weight-only checkpoints are dequantized at load.
    /// </summary>
    public override string? QuantizationRefusal(QuantizationConfig q) => q switch
    {
        { Activations: null } => null,
        { WeightScales: not Fp8WeightScales.PerBlock, Activations: ActivationScaling.DynamicPerToken or ActivationScaling.StaticPerTensor } => null,
        { WeightScales: Fp8WeightScales.PerBlock, BlockRows: CudaBackend.Fp8ScaleBlock, BlockColumns: CudaBackend.Fp8ScaleBlock,
            Activations: ActivationScaling.DynamicPerTokenGroup, ActivationGroupSize: CudaBackend.Fp8ScaleBlock } => null,
        _ => $"is an FP8 checkpoint ({q.Method}) with {Describe(q)}; the CUDA backend's FP8 GEMMs take per-tensor or per-channel weight scales "
            + $"with per-token or static input scales, or {CudaBackend.Fp8ScaleBlock}x{CudaBackend.Fp8ScaleBlock} weight blocks with per-token input groups of "
            + $"{CudaBackend.Fp8ScaleBlock}: run it with --device cpu",
    };

    private static string Describe(QuantizationConfig q) =>
        (q.WeightScales == Fp8WeightScales.PerBlock ? $"{q.BlockRows}x{q.BlockColumns} weight blocks" : $"{q.WeightScales} weight scales")
        + $" and {q.Activations} inputs" + (q.Activations == ActivationScaling.DynamicPerTokenGroup ? $" in groups of {q.ActivationGroupSize}" : "");

    public override bool MultipliesFp8 => true;

    public override bool MultipliesInt4 => true;

    /// <summary>A dtype or KV-cache type the card cannot run (bf16 before sm_80) is the user's to fix, in one line.</summary>
    public override int? DeviceCount => CudaDevice.Count();

    public override IModelBackend CreateBackend(DType dtype, DType? kvCacheDType, bool sleepMode, int device = 0)
    {
#pragma warning disable CA2000 // the backend owns the device (ownsDevice: true); a refused dtype disposes it below
        CudaDevice gpu = OpenGpu(device);
#pragma warning restore CA2000
        try
        {
            return new CudaBackend(gpu, dtype, ownsDevice: true, kvCacheDType, sleepMode);
        }
        catch (NotSupportedException e)
        {
            gpu.Dispose();
            throw new ModelLoadException(e.Message);
        }
    }

    public override IModelBackend CreateDraftBackend(IModelBackend target, DType dtype, DType? kvCacheDType)
    {
        try
        {
            return new CudaBackend(((CudaBackend)target).Device, dtype, ownsDevice: false, kvCacheDType);
        }
        catch (NotSupportedException e)
        {
            throw new ModelLoadException(e.Message);
        }
    }

    /// <summary>The GPU's work is in kernels compiled once (NVRTC); the startup step and graph recording warm the host side.</summary>
    public override TimeSpan JitWarmUp => TimeSpan.Zero;

    /// <summary>
    /// What <c>--gpu-memory-utilization</c> of the card leaves, less the scratch allocated after the cache (split
    /// attention's partial results, a MoE model's routing and per-pair results) and a cuBLAS reserve.
    /// </summary>
    public override long DefaultKvCacheBytes(IModelBackend backend, ModelConfig config, float gpuMemoryUtilization)
    {
        (long free, long total) = ((CudaBackend)backend).Device.MemoryInfo();
        long used = total - free;
        return Math.Max(0, (long)(total * (double)gpuMemoryUtilization) - used - CublasReserve) - ScratchAfterCache(backend, config);
    }

    /// <summary>Split attention's partial results, and a MoE model's routing and per-pair results.</summary>
    public override long ScratchAfterCache(IModelBackend backend, ModelConfig config) =>
        CudaBackend.SplitAttentionBytes(config.NumAttentionHeads, config.HeadDim)
        + (config.Moe is { } moe ? CudaBackend.MoeScratchBytes(moe.TopK, moe.NumExperts, config.HiddenSize, moe.IntermediateSize, backend.ActivationDType) : 0);

    public override IEnumerable<string> LoadNotes(IModelBackend backend)
    {
        if (backend is CudaBackend { TunedGemmChoices: { Count: > 0 } choices })
        {
            string tally = string.Join(", ", choices.Values.GroupBy(kernel => kernel).OrderByDescending(g => g.Count()).Select(g => $"{g.Key} {g.Count()}"));
            yield return $"GEMMs of 1-{CudaBackend.TunedRowsLimit} rows, fastest of {choices.Count} weight shapes × row buckets: {tally}";
        }
    }

    /// <summary>GPU <paramref name="ordinal"/>; a machine without a driver or that GPU is the user's to fix: one line, no stack trace.</summary>
    private static CudaDevice OpenGpu(int ordinal)
    {
        try
        {
            return CudaDevice.Open(ordinal);
        }
        catch (CudaException e)
        {
            throw new ModelLoadException($"--device cuda: no usable NVIDIA GPU. {e.Message} Use --device cpu to run on the CPU.");
        }
    }
}
