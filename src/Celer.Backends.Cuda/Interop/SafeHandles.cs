using System.Runtime.InteropServices;

namespace Celer.Backends.Cuda.Interop;

/// <summary>Device memory from cuMemAlloc. Frees with the owning context made current (finalizers run on another thread).</summary>
internal sealed class SafeDeviceMemoryHandle : SafeHandle
{
    private readonly nint _context;

    public SafeDeviceMemoryHandle(ulong pointer, nint context)
        : base(0, ownsHandle: true)
    {
        SetHandle((nint)pointer);
        _context = context;
    }

    public ulong Pointer => (ulong)handle;

    public override bool IsInvalid => handle == 0;

    protected override bool ReleaseHandle()
    {
        CudaDriver.cuCtxSetCurrent(_context);
        return CudaDriver.cuMemFree_v2((ulong)handle) == 0;
    }
}

/// <summary>Page-locked host memory from cuMemAllocHost, the staging area for fast host↔device copies.</summary>
internal sealed class SafePinnedHostHandle : SafeHandle
{
    private readonly nint _context;

    public SafePinnedHostHandle(nint pointer, nint context)
        : base(0, ownsHandle: true)
    {
        SetHandle(pointer);
        _context = context;
    }

    public override bool IsInvalid => handle == 0;

    protected override bool ReleaseHandle()
    {
        CudaDriver.cuCtxSetCurrent(_context);
        return CudaDriver.cuMemFreeHost(handle) == 0;
    }
}

/// <summary>A loaded CUDA module (the compiled kernels).</summary>
internal sealed class SafeCudaModuleHandle : SafeHandle
{
    private readonly nint _context;

    public SafeCudaModuleHandle(nint module, nint context)
        : base(0, ownsHandle: true)
    {
        SetHandle(module);
        _context = context;
    }

    public override bool IsInvalid => handle == 0;

    protected override bool ReleaseHandle()
    {
        CudaDriver.cuCtxSetCurrent(_context);
        return CudaDriver.cuModuleUnload(handle) == 0;
    }
}

/// <summary>A CUDA stream.</summary>
internal sealed class SafeCudaStreamHandle : SafeHandle
{
    private readonly nint _context;

    public SafeCudaStreamHandle(nint stream, nint context)
        : base(0, ownsHandle: true)
    {
        SetHandle(stream);
        _context = context;
    }

    public override bool IsInvalid => handle == 0;

    protected override bool ReleaseHandle()
    {
        CudaDriver.cuCtxSetCurrent(_context);
        return CudaDriver.cuStreamDestroy_v2(handle) == 0;
    }
}

/// <summary>A cuBLAS handle.</summary>
internal sealed class SafeCublasHandle : SafeHandle
{
    public SafeCublasHandle(nint cublas)
        : base(0, ownsHandle: true) => SetHandle(cublas);

    public override bool IsInvalid => handle == 0;

    protected override bool ReleaseHandle() => Cublas.cublasDestroy_v2(handle) == 0;
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

/// <summary>An instantiated CUDA graph (a captured decode step) and the graph it came from.</summary>
internal sealed class SafeCudaGraphHandle : SafeHandle
{
    private readonly nint _graph;
    private readonly nint _context;

    public SafeCudaGraphHandle(nint graphExec, nint graph, nint context)
        : base(0, ownsHandle: true)
    {
        SetHandle(graphExec);
        _graph = graph;
        _context = context;
    }

    public override bool IsInvalid => handle == 0;

    protected override bool ReleaseHandle()
    {
        CudaDriver.cuCtxSetCurrent(_context);
        return CudaDriver.cuGraphExecDestroy(handle) == 0 & CudaDriver.cuGraphDestroy(_graph) == 0;
    }
}
