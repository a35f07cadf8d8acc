using Celer.Backends.Cuda.Interop;
using Celer.Models.Backend;
using Celer.Models.Quantization;
using Celer.Models.Weights;

namespace Celer.Backends.Cuda;

/// <summary>
/// The GEMMs of decode steps of up to 64 rows, where the weights are read once per step and cuBLAS reads them at
/// ~85 % of copy: <c>skinny_gemm.cu</c>'s kernels stream them faster where they can, on CUDA cores for 1, 2 or 4 rows
/// and on tensor cores for 8 to 64 (sm_80+, 16-bit models). They are among the candidates CudaBackend.Gemm.cs times per
/// weight shape and row bucket, so a card or library where cuBLAS is faster keeps cuBLAS.
/// </summary>
public sealed unsafe partial class CudaBackend
{
    private const int SkinnyCudaCoreRows = 4;
    private const int SkinnyFp8Rows = 8;                   // the FP8 kernel (tensor cores): the MMA's 8 columns
    private const int SkinnyThreads = 256;                 // CUDA-core kernel: 8 warps = 8 output columns per block
    private const int SkinnyTensorCoreThreads = 128;       // tensor-core kernel: SKINNY_TC_WARPS warps on 16 columns
    private static readonly int[] SkinnyBuckets = [1, 2, 4, 8, 16, 32, 64];

    private readonly nint[] _skinnyKernels = new nint[2 * 7];
    private readonly nint[] _gatedSkinnyKernels = new nint[2 * 3];   // SiLU, gelu(tanh) × buckets 1, 2, 4

    /// <summary>The smallest bucket that holds the rows (the kernels are compiled per bucket); 0 beyond the largest.</summary>
    private static int SkinnyBucket(int rows)
    {
        foreach (int bucket in SkinnyBuckets)
        {
            if (rows <= bucket)
            {
                return bucket;
            }
        }

        return 0;
    }

    /// <summary>
    /// 16-byte rows of the model dtype in, the model dtype or fp32 out; beyond four rows the tensor-core kernel, which
    /// needs a 16-bit model on sm_80+ and k in 32s.
    /// </summary>
    private bool SkinnyGemmFits(Tensor x, int rows, Tensor weight, Tensor y)
    {
        int bucket = SkinnyBucket(rows);
        bool fits = bucket > 0 && x.DType == ActivationDType && weight.DType == ActivationDType
            && (y.DType == ActivationDType || y.DType == DType.F32)
            && weight.Columns % (16 / ActivationDType.ByteSize()) == 0 && x.Data % 16 == 0 && weight.Data % 16 == 0;
        return fits && (bucket <= SkinnyCudaCoreRows
            || (ActivationDType != DType.F32 && _device.ComputeCapability.Major >= 8 && weight.Columns % 32 == 0));
    }

    /// <summary>
    /// The gate/up GEMM and its activation in one launch (<c>skinny_gemm_gated</c>) where the GEMM alone would run on the
    /// CUDA-core skinny kernel (its tuned choice for this shape and row bucket); otherwise the GEMM, then the activation.
    /// </summary>
    public void GatedLinear(Tensor x, int rows, Tensor gateUp, Tensor? bias, ActivationQuantization? activations, bool geluTanh, Tensor gateUpBuffer, Tensor output,
        ActivationQuantization? quantizeOutputFor = null)
    {
        int bucket = SkinnyBucket(rows);
        bool fits = bias is null && activations is null && quantizeOutputFor is null && gateUp.Int4 is null && gateUp.DType == ActivationDType
            && bucket is > 0 and <= SkinnyCudaCoreRows && output.DType == ActivationDType && SkinnyGemmFits(x, rows, gateUp, gateUpBuffer);
        // The GEMM's own choice decides (the tuner timed it against cuBLAS), and its first use is what times it.
        if (!fits || Choice(Plan(x, gateUp, null, gateUpBuffer), x, rows, gateUp, null, gateUpBuffer).Kernel != GemmKernel.Skinny)
        {
            IModelBackend.LinearThenActivation(this, x, rows, gateUp, bias, activations, geluTanh, gateUpBuffer, output, quantizeOutputFor);
            return;
        }

        ref nint function = ref _gatedSkinnyKernels[(geluTanh ? 3 : 0) + System.Numerics.BitOperations.Log2((uint)bucket)];
        if (function == 0)
        {
            function = _kernels.Function($"skinny_gemm_gated{(geluTanh ? "_gelu" : "")}_{_suffix}_m{bucket}");
        }

        ulong xp = (ulong)x.Data, wp = (ulong)gateUp.Data, yp = (ulong)output.Data;
        int d = gateUp.Rows / 2, k = (int)gateUp.Columns;
        void** args = stackalloc void*[] { &xp, &rows, &wp, &d, &k, &yp };
        int columnsPerBlock = SkinnyThreads / 32;
        _kernels.Launch(function, "skinny_gemm_gated", (uint)((d + columnsPerBlock - 1) / columnsPerBlock), 1, 1, SkinnyThreads, args);
    }

    private void SkinnyGemm(Tensor x, int rows, Tensor weight, Tensor y)
    {
        int bucket = SkinnyBucket(rows), outF32 = y.DType == DType.F32 && ActivationDType != DType.F32 ? 1 : 0;
        bool tensorCores = bucket > SkinnyCudaCoreRows;
        ref nint function = ref _skinnyKernels[outF32 * SkinnyBuckets.Length + Array.IndexOf(SkinnyBuckets, bucket)];
        if (function == 0)
        {
            function = _kernels.Function($"skinny_gemm{(tensorCores ? "_tc" : "")}_{_suffix}_m{bucket}{(outF32 == 1 ? "_f32" : "")}");
        }

        ulong xp = (ulong)x.Data, wp = (ulong)weight.Data, yp = (ulong)y.Data;
        int n = weight.Rows, k = (int)weight.Columns;
        void** args = stackalloc void*[] { &xp, &rows, &wp, &n, &k, &yp };
        int threads = tensorCores ? SkinnyTensorCoreThreads : SkinnyThreads;
        int columnsPerBlock = tensorCores ? 16 : SkinnyThreads / 32;
        _kernels.Launch(function, "skinny_gemm", (uint)((n + columnsPerBlock - 1) / columnsPerBlock), 1, 1, (uint)threads, args);
    }
}
