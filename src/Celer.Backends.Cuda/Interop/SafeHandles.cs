using System.Runtime.InteropServices;

namespace Celer.Backends.Cuda.Interop;

/// <summary>
/// A CUDA object that lives in a context. It is released with that context made current, because disposal or the
/// finalizer may run on a thread where it is not.
/// </summary>
internal abstract class ContextBoundHandle : SafeHandle
{
    private readonly nint _context;

    protected ContextBoundHandle(nint handle, nint context)
        : base(0, ownsHandle: true)
    {
        SetHandle(handle);
        _context = context;
    }

    public override bool IsInvalid => handle == 0;

    protected sealed override bool ReleaseHandle()
    {
        _ = CudaDriver.cuCtxSetCurrent(_context);   // Release's own status says whether the release worked
        return Release(handle);
    }

    /// <summary>The CUDA call that frees the object; true on success.</summary>
    protected abstract bool Release(nint handle);
}

/// <summary>Device memory from cuMemAlloc.</summary>
internal sealed class SafeDeviceMemoryHandle(ulong pointer, nint context) : ContextBoundHandle((nint)pointer, context)
{
    public ulong Pointer => (ulong)handle;

    protected override bool Release(nint handle) => CudaDriver.cuMemFree_v2((ulong)handle) == 0;
}

/// <summary>Page-locked host memory from cuMemAllocHost, the staging area for fast host↔device copies.</summary>
internal sealed class SafePinnedHostHandle(nint pointer, nint context) : ContextBoundHandle(pointer, context)
{
    protected override bool Release(nint handle) => CudaDriver.cuMemFreeHost(handle) == 0;
}

/// <summary>A loaded CUDA module (the compiled kernels).</summary>
internal sealed class SafeCudaModuleHandle(nint module, nint context) : ContextBoundHandle(module, context)
{
    protected override bool Release(nint handle) => CudaDriver.cuModuleUnload(handle) == 0;
}

/// <summary>A CUDA stream.</summary>
internal sealed class SafeCudaStreamHandle(nint stream, nint context) : ContextBoundHandle(stream, context)
{
    protected override bool Release(nint handle) => CudaDriver.cuStreamDestroy_v2(handle) == 0;
}

/// <summary>An instantiated CUDA graph (a recorded decode step) and the graph it came from.</summary>
internal sealed class SafeCudaEventHandle(nint evt, nint context) : ContextBoundHandle(evt, context)
{
    protected override bool Release(nint handle) => CudaDriver.cuEventDestroy_v2(handle) == 0;
}

internal sealed class SafeCudaGraphHandle(nint graphExec, nint graph, nint context) : ContextBoundHandle(graphExec, context)
{
    protected override bool Release(nint handle) => CudaDriver.cuGraphExecDestroy(handle) == 0 & CudaDriver.cuGraphDestroy(graph) == 0;
}

/// <summary>A cuBLAS handle.</summary>
internal sealed class SafeCublasHandle : SafeHandle
{
    public SafeCublasHandle(nint cublas)
        : base(0, ownsHandle: true) => SetHandle(cublas);

    public override bool IsInvalid => handle == 0;

    protected override bool ReleaseHandle() => Cublas.cublasDestroy_v2(handle) == 0;
}

/// <summary>A cuBLASLt handle (not bound to a stream: each matmul names its own).</summary>
internal sealed class SafeCublasLtHandle : SafeHandle
{
    public SafeCublasLtHandle(nint handle)
        : base(0, ownsHandle: true) => SetHandle(handle);

    public override bool IsInvalid => handle == 0;

    protected override bool ReleaseHandle() => CublasLt.cublasLtDestroy(handle) == 0;
}

/// <summary>The device's primary context, retained while Celer uses the GPU.</summary>
internal sealed class SafePrimaryContextHandle : SafeHandle
{
    private readonly int _device;

    public SafePrimaryContextHandle(nint context, int device)
        : base(0, ownsHandle: true)
    {
        SetHandle(context);
        _device = device;
    }

    public override bool IsInvalid => handle == 0;

    protected override bool ReleaseHandle() => CudaDriver.cuDevicePrimaryCtxRelease_v2(_device) == 0;
}
