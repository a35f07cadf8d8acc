namespace Celer.Backends.Cuda.Interop;

/// <summary>A CUDA, NVRTC, cuBLAS or NCCL call failed, or no GPU is usable.</summary>
public sealed class CudaException : Exception
{
    public CudaException(string message)
        : base(message)
    {
    }

    public CudaException(string message, Exception inner)
        : base(message, inner)
    {
    }
}
