using System.Text;
using Celer.Backends.Cuda.Interop;

namespace Celer.Backends.Cuda;

/// <summary>
/// One GPU: its primary context, the stream Celer's work runs on, a cuBLAS handle bound to that stream and a cuBLASLt handle.
/// CUDA binds the current context per thread, so every entry point from a new thread calls <see cref="MakeCurrent"/>.
/// </summary>
public sealed unsafe class CudaDevice : IDisposable
{
    private readonly SafePrimaryContextHandle _context;
    private readonly SafeCudaStreamHandle _stream;
    private readonly SafeCublasHandle _cublas;
    private readonly SafeCublasLtHandle _cublasLt;

    private CudaDevice(int ordinal, int device, nint context)
    {
        Ordinal = ordinal;
        Handle = device;
        _context = new SafePrimaryContextHandle(context, device);
        MakeCurrent();

        byte* name = stackalloc byte[256];
        CudaDriver.Check(CudaDriver.cuDeviceGetName(name, 256, device), "cuDeviceGetName");
        Name = Encoding.UTF8.GetString(name, new ReadOnlySpan<byte>(name, 256).IndexOf((byte)0));
        CudaDriver.Check(CudaDriver.cuDeviceGetAttribute(out int major, CudaDriver.CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR, device), "cuDeviceGetAttribute");
        CudaDriver.Check(CudaDriver.cuDeviceGetAttribute(out int minor, CudaDriver.CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR, device), "cuDeviceGetAttribute");
        CudaDriver.Check(CudaDriver.cuDeviceGetAttribute(out int sms, CudaDriver.CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT, device), "cuDeviceGetAttribute");
        CudaDriver.Check(CudaDriver.cuDeviceGetAttribute(out int sharedOptIn, CudaDriver.CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN, device), "cuDeviceGetAttribute");
        CudaDriver.Check(CudaDriver.cuDeviceTotalMem_v2(out nuint total, device), "cuDeviceTotalMem");
        MaxSharedMemoryPerBlock = sharedOptIn;
        ComputeCapability = (major, minor);
        MultiprocessorCount = sms;
        TotalMemory = (long)total;

        CudaDriver.Check(CudaDriver.cuStreamCreate(out nint stream, CudaDriver.CU_STREAM_NON_BLOCKING), "cuStreamCreate");
        _stream = new SafeCudaStreamHandle(stream, context);
        Cublas.Check(Cublas.cublasCreate_v2(out nint cublas), "cublasCreate");
        _cublas = new SafeCublasHandle(cublas);
        Cublas.Check(Cublas.cublasSetStream_v2(cublas, stream), "cublasSetStream");
        Cublas.Check(CublasLt.cublasLtCreate(out nint cublasLt), "cublasLtCreate");
        _cublasLt = new SafeCublasLtHandle(cublasLt);
    }

    public int Ordinal { get; }

    /// <summary>The driver's CUdevice, which virtual memory management names a GPU by.</summary>
    internal int Handle { get; }

    public string Name { get; }

    public (int Major, int Minor) ComputeCapability { get; }

    public int MultiprocessorCount { get; }

    /// <summary>The most shared memory one block may take once a kernel opts in: 227 KB on Hopper, 163 KB on A100, 99 KB on sm_86/89.</summary>
    public int MaxSharedMemoryPerBlock { get; }

    public long TotalMemory { get; }

    internal nint Context => _context.DangerousGetHandle();

    internal nint Stream => _stream.DangerousGetHandle();

    internal nint CublasHandle => _cublas.DangerousGetHandle();

    internal nint CublasLtHandle => _cublasLt.DangerousGetHandle();

    /// <summary>Opens a GPU, or throws a <see cref="CudaException"/> that says why none is usable.</summary>
    public static CudaDevice Open(int ordinal = 0)
    {
        try
        {
            CudaDriver.Check(CudaDriver.cuInit(0), "cuInit");
        }
        catch (DllNotFoundException e)
        {
            throw new CudaException("No CUDA driver was found on this machine (libcuda). --device cuda needs an NVIDIA GPU and driver.", e);
        }

        CudaDriver.Check(CudaDriver.cuDeviceGetCount(out int count), "cuDeviceGetCount");
        if (ordinal < 0 || ordinal >= count)
        {
            throw new CudaException($"GPU {ordinal} was asked for; this machine has {count}.");
        }

        CudaDriver.Check(CudaDriver.cuDeviceGet(out int device, ordinal), "cuDeviceGet");
        CudaDriver.Check(CudaDriver.cuDevicePrimaryCtxRetain(out nint context, device), "cuDevicePrimaryCtxRetain");
        return new CudaDevice(ordinal, device, context);
    }

    /// <summary>The GPUs this process sees (0 without a driver).</summary>
    public static int Count()
    {
        try
        {
            return CudaDriver.cuInit(0) == 0 && CudaDriver.cuDeviceGetCount(out int count) == 0 ? count : 0;
        }
        catch (Exception e) when (e is DllNotFoundException or CudaException or EntryPointNotFoundException)
        {
            return 0;
        }
    }

    /// <summary>True when a CUDA driver and at least one GPU are present (used to skip GPU tests).</summary>
    public static bool IsAvailable()
    {
        try
        {
            return CudaDriver.cuInit(0) == 0 && CudaDriver.cuDeviceGetCount(out int count) == 0 && count > 0;
        }
        catch (Exception e) when (e is DllNotFoundException or CudaException or EntryPointNotFoundException)
        {
            return false;
        }
    }

    public void MakeCurrent() => CudaDriver.Check(CudaDriver.cuCtxSetCurrent(Context), "cuCtxSetCurrent");

#pragma warning disable CA1822 // asks the driver about the current context, which is this device's
    public (long Free, long Total) MemoryInfo()
#pragma warning restore CA1822
    {
        CudaDriver.Check(CudaDriver.cuMemGetInfo_v2(out nuint free, out nuint total), "cuMemGetInfo");
        return ((long)free, (long)total);
    }

    internal SafeDeviceMemoryHandle Allocate(long bytes)
    {
        CudaDriver.Check(CudaDriver.cuMemAlloc_v2(out ulong pointer, (nuint)Math.Max(bytes, 1)), $"cuMemAlloc({bytes} bytes)");
        return new SafeDeviceMemoryHandle(pointer, Context);
    }

    internal SafePinnedHostHandle AllocatePinned(long bytes)
    {
        CudaDriver.Check(CudaDriver.cuMemAllocHost_v2(out nint pointer, (nuint)bytes), $"cuMemAllocHost({bytes} bytes)");
        return new SafePinnedHostHandle(pointer, Context);
    }

    public void Synchronize() => CudaDriver.Check(CudaDriver.cuStreamSynchronize(Stream), "cuStreamSynchronize");

    public void Dispose()
    {
        _cublasLt.Dispose();
        _cublas.Dispose();
        _stream.Dispose();
        _context.Dispose();
    }
}
