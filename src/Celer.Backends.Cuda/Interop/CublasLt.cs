using System.Runtime.InteropServices;

namespace Celer.Backends.Cuda.Interop;

/// <summary>
/// cuBLASLt, the matmul API with algorithm heuristics and fused epilogues (bias). Descriptors are host-side objects;
/// the enum values are those of <c>cublasLt.h</c>, stable since CUDA 11. Reference:
/// https://docs.nvidia.com/cuda/cublas/#using-the-cublaslt-api
/// </summary>
internal static unsafe partial class CublasLt
{
    public const int CUBLASLT_MATMUL_DESC_TRANSA = 3;
    public const int CUBLASLT_MATMUL_DESC_TRANSB = 4;
    public const int CUBLASLT_MATMUL_DESC_EPILOGUE = 7;
    public const int CUBLASLT_MATMUL_DESC_BIAS_POINTER = 8;
    public const int CUBLASLT_MATMUL_DESC_A_SCALE_POINTER = 17;
    public const int CUBLASLT_MATMUL_DESC_B_SCALE_POINTER = 18;
    public const int CUBLASLT_MATMUL_DESC_A_SCALE_MODE = 31;
    public const int CUBLASLT_MATMUL_DESC_B_SCALE_MODE = 32;
    public const int CUBLASLT_EPILOGUE_BIAS = 4;

    // cublasLtMatmulMatrixScale_t (cuBLAS 12.9+ for the vector and block kinds on sm_90).
    public const int CUBLASLT_MATMUL_MATRIX_SCALE_OUTER_VEC_32F = 3;
    public const int CUBLASLT_MATMUL_MATRIX_SCALE_VEC128_32F = 4;
    public const int CUBLASLT_MATMUL_MATRIX_SCALE_BLK128x128_32F = 5;
    public const int CUBLASLT_MATRIX_LAYOUT_COLS = 3;
    public const int CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES = 1;
    public const int CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES = 5;   // B, C and D follow as 6, 7, 8

    /// <summary>cublasStatus_t's CUBLAS_STATUS_NOT_SUPPORTED: no algorithm of the heuristic fits the problem.</summary>
    public const int CUBLAS_STATUS_NOT_SUPPORTED = 15;

    static CublasLt() => CudaLibraryResolver.Register();

    /// <summary>cublasLtMatmulAlgo_t: an opaque 64-byte description of one algorithm, passed back to cublasLtMatmul as is.</summary>
    [StructLayout(LayoutKind.Sequential, Size = 64)]
    public struct MatmulAlgo
    {
        private ulong _data0;
    }

    /// <summary>cublasLtMatmulHeuristicResult_t.</summary>
    [StructLayout(LayoutKind.Sequential)]
    public struct HeuristicResult
    {
        public MatmulAlgo Algo;
        public nuint WorkspaceSize;
        public int State;
        public float WavesCount;
        private fixed int _reserved[4];
    }

    [LibraryImport(CudaLibraryResolver.CublasLt)] public static partial int cublasLtCreate(out nint handle);
    [LibraryImport(CudaLibraryResolver.CublasLt)] public static partial int cublasLtDestroy(nint handle);
    [LibraryImport(CudaLibraryResolver.CublasLt)] public static partial int cublasLtMatmulDescCreate(out nint desc, int computeType, int scaleType);
    [LibraryImport(CudaLibraryResolver.CublasLt)] public static partial int cublasLtMatmulDescDestroy(nint desc);
    [LibraryImport(CudaLibraryResolver.CublasLt)] public static partial int cublasLtMatmulDescSetAttribute(nint desc, int attribute, void* value, nuint bytes);
    [LibraryImport(CudaLibraryResolver.CublasLt)] public static partial int cublasLtMatrixLayoutCreate(out nint layout, int type, ulong rows, ulong cols, long ld);
    [LibraryImport(CudaLibraryResolver.CublasLt)] public static partial int cublasLtMatrixLayoutDestroy(nint layout);
    [LibraryImport(CudaLibraryResolver.CublasLt)] public static partial int cublasLtMatrixLayoutSetAttribute(nint layout, int attribute, void* value, nuint bytes);
    [LibraryImport(CudaLibraryResolver.CublasLt)] public static partial int cublasLtMatmulPreferenceCreate(out nint preference);
    [LibraryImport(CudaLibraryResolver.CublasLt)] public static partial int cublasLtMatmulPreferenceDestroy(nint preference);
    [LibraryImport(CudaLibraryResolver.CublasLt)] public static partial int cublasLtMatmulPreferenceSetAttribute(nint preference, int attribute, void* value, nuint bytes);

    [LibraryImport(CudaLibraryResolver.CublasLt)]
    public static partial int cublasLtMatmulAlgoGetHeuristic(nint handle, nint desc, nint a, nint b, nint c, nint d, nint preference,
        int requested, HeuristicResult* results, out int returned);

    [LibraryImport(CudaLibraryResolver.CublasLt)]
    public static partial int cublasLtMatmul(nint handle, nint desc, void* alpha, ulong a, nint aLayout, ulong b, nint bLayout, void* beta,
        ulong c, nint cLayout, ulong d, nint dLayout, MatmulAlgo* algo, ulong workspace, nuint workspaceBytes, nint stream);
}
