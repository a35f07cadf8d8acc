using System.Runtime.InteropServices;

namespace Celer.Backends.Cuda.Interop;

/// <summary>cuBLAS (v2 API). Reference: https://docs.nvidia.com/cuda/cublas/</summary>
internal static unsafe partial class Cublas
{
    public const int CUBLAS_OP_N = 0;
    public const int CUBLAS_OP_T = 1;
    public const int CUDA_R_32F = 0;
    public const int CUDA_R_16F = 2;
    public const int CUDA_R_16BF = 14;
    public const int CUDA_R_8F_E4M3 = 28;
    public const int CUBLAS_COMPUTE_32F = 68;
    public const int CUBLAS_GEMM_DEFAULT = -1;

    static Cublas() => CudaLibraryResolver.Register();

    public static void Check(int status, string call)
    {
        if (status != 0)
        {
            throw new CudaException($"{call} failed: cublasStatus_t {status}");
        }
    }

    [LibraryImport(CudaLibraryResolver.Cublas)] public static partial int cublasCreate_v2(out nint handle);
    [LibraryImport(CudaLibraryResolver.Cublas)] public static partial int cublasDestroy_v2(nint handle);
    [LibraryImport(CudaLibraryResolver.Cublas)] public static partial int cublasSetStream_v2(nint handle, nint stream);
    [LibraryImport(CudaLibraryResolver.Cublas)] public static partial int cublasSetWorkspace_v2(nint handle, ulong workspace, nuint bytes);
    [LibraryImport(CudaLibraryResolver.Cublas)]
    public static partial int cublasGemmEx(nint handle, int transa, int transb, int m, int n, int k, void* alpha,
        ulong a, int aType, int lda, ulong b, int bType, int ldb, void* beta, ulong c, int cType, int ldc, int computeType, int algo);
}
