using System.Runtime.InteropServices;

namespace Celer.Backends.Cuda.Interop;

/// <summary>
/// The CUDA driver API (libcuda), C names kept. Reference: https://docs.nvidia.com/cuda/cuda-driver-api/
/// Every call returns a CUresult, checked in one place (<see cref="Check"/>).
/// </summary>
internal static unsafe partial class CudaDriver
{
    public const int CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT = 16;
    public const int CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR = 75;
    public const int CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR = 76;
    public const int CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN = 97;
    public const uint CU_STREAM_NON_BLOCKING = 1;
    public const uint CU_EVENT_DEFAULT = 0;

    /// <summary>An event used only to order streams and to poll: recording it skips the timestamp.</summary>
    public const uint CU_EVENT_DISABLE_TIMING = 2;
    public const int CUDA_ERROR_NOT_READY = 600;

    /// <summary>Capture only this thread's work on the stream; other threads may keep using CUDA meanwhile.</summary>
    public const int CU_STREAM_CAPTURE_MODE_THREAD_LOCAL = 1;

    static CudaDriver() => CudaLibraryResolver.Register();

    public static void Check(int result, string call)
    {
        if (result == 0)
        {
            return;
        }

        string name = "?", text = "?";
        if (cuGetErrorName(result, out nint namePtr) == 0 && namePtr != 0)
        {
            name = Marshal.PtrToStringUTF8(namePtr) ?? "?";
        }

        if (cuGetErrorString(result, out nint textPtr) == 0 && textPtr != 0)
        {
            text = Marshal.PtrToStringUTF8(textPtr) ?? "?";
        }

        throw new CudaException($"{call} failed: {name} ({result}): {text}");
    }

    [LibraryImport(CudaLibraryResolver.Driver)] public static partial int cuInit(uint flags);
    [LibraryImport(CudaLibraryResolver.Driver)] public static partial int cuDriverGetVersion(out int version);
    [LibraryImport(CudaLibraryResolver.Driver)] public static partial int cuDeviceGetCount(out int count);
    [LibraryImport(CudaLibraryResolver.Driver)] public static partial int cuDeviceGet(out int device, int ordinal);
    [LibraryImport(CudaLibraryResolver.Driver)] public static partial int cuDeviceGetName(byte* name, int length, int device);
    [LibraryImport(CudaLibraryResolver.Driver)] public static partial int cuDeviceGetAttribute(out int value, int attribute, int device);
    [LibraryImport(CudaLibraryResolver.Driver)] public static partial int cuDeviceTotalMem_v2(out nuint bytes, int device);
    [LibraryImport(CudaLibraryResolver.Driver)] public static partial int cuDevicePrimaryCtxRetain(out nint context, int device);
    [LibraryImport(CudaLibraryResolver.Driver)] public static partial int cuDevicePrimaryCtxRelease_v2(int device);
    [LibraryImport(CudaLibraryResolver.Driver)] public static partial int cuCtxSetCurrent(nint context);
    [LibraryImport(CudaLibraryResolver.Driver)] public static partial int cuCtxSynchronize();
    [LibraryImport(CudaLibraryResolver.Driver)] public static partial int cuMemGetInfo_v2(out nuint free, out nuint total);
    [LibraryImport(CudaLibraryResolver.Driver)] public static partial int cuMemAlloc_v2(out ulong devicePtr, nuint bytes);
    // Virtual memory management: an address range reserved once and physical memory mapped into it and out again, so a
    // sleeping model gives its memory back while every pointer into it (kernel arguments, recorded graphs) stays valid.
    [LibraryImport(CudaLibraryResolver.Driver)] public static partial int cuMemAddressReserve(out ulong ptr, nuint size, nuint alignment, ulong addr, ulong flags);
    [LibraryImport(CudaLibraryResolver.Driver)] public static partial int cuMemAddressFree(ulong ptr, nuint size);
    [LibraryImport(CudaLibraryResolver.Driver)] public static partial int cuMemCreate(out ulong handle, nuint size, in CUmemAllocationProp prop, ulong flags);
    [LibraryImport(CudaLibraryResolver.Driver)] public static partial int cuMemRelease(ulong handle);
    [LibraryImport(CudaLibraryResolver.Driver)] public static partial int cuMemMap(ulong ptr, nuint size, nuint offset, ulong handle, ulong flags);
    [LibraryImport(CudaLibraryResolver.Driver)] public static partial int cuMemUnmap(ulong ptr, nuint size);
    [LibraryImport(CudaLibraryResolver.Driver)] public static partial int cuMemSetAccess(ulong ptr, nuint size, in CUmemAccessDesc desc, nuint count);
    [LibraryImport(CudaLibraryResolver.Driver)] public static partial int cuMemGetAllocationGranularity(out nuint granularity, in CUmemAllocationProp prop, int option);
    [LibraryImport(CudaLibraryResolver.Driver)] public static partial int cuMemFree_v2(ulong devicePtr);
    [LibraryImport(CudaLibraryResolver.Driver)] public static partial int cuMemAllocHost_v2(out nint hostPtr, nuint bytes);
    [LibraryImport(CudaLibraryResolver.Driver)] public static partial int cuMemFreeHost(nint hostPtr);
    [LibraryImport(CudaLibraryResolver.Driver)] public static partial int cuMemcpyHtoDAsync_v2(ulong dst, void* src, nuint bytes, nint stream);
    [LibraryImport(CudaLibraryResolver.Driver)] public static partial int cuMemcpyDtoHAsync_v2(void* dst, ulong src, nuint bytes, nint stream);
    [LibraryImport(CudaLibraryResolver.Driver)] public static partial int cuMemcpyDtoDAsync_v2(ulong dst, ulong src, nuint bytes, nint stream);
    [LibraryImport(CudaLibraryResolver.Driver)] public static partial int cuMemsetD32Async(ulong dst, uint value, nuint count, nint stream);
    [LibraryImport(CudaLibraryResolver.Driver)] public static partial int cuStreamCreate(out nint stream, uint flags);
    [LibraryImport(CudaLibraryResolver.Driver)] public static partial int cuStreamDestroy_v2(nint stream);
    [LibraryImport(CudaLibraryResolver.Driver)] public static partial int cuStreamSynchronize(nint stream);
    [LibraryImport(CudaLibraryResolver.Driver)] public static partial int cuEventCreate(out nint evt, uint flags);
    [LibraryImport(CudaLibraryResolver.Driver)] public static partial int cuEventDestroy_v2(nint evt);
    [LibraryImport(CudaLibraryResolver.Driver)] public static partial int cuEventRecord(nint evt, nint stream);

    /// <summary>Makes later work on <paramref name="stream"/> wait for the event's last record (on the GPU; the host goes on).</summary>
    [LibraryImport(CudaLibraryResolver.Driver)] public static partial int cuStreamWaitEvent(nint stream, nint evt, uint flags);
    [LibraryImport(CudaLibraryResolver.Driver)] public static partial int cuEventSynchronize(nint evt);
    [LibraryImport(CudaLibraryResolver.Driver)] public static partial int cuEventQuery(nint evt);
    [LibraryImport(CudaLibraryResolver.Driver)] public static partial int cuEventElapsedTime(out float milliseconds, nint start, nint end);
    [LibraryImport(CudaLibraryResolver.Driver)] public static partial int cuModuleLoadData(out nint module, void* image);
    [LibraryImport(CudaLibraryResolver.Driver)] public static partial int cuModuleUnload(nint module);
    [LibraryImport(CudaLibraryResolver.Driver, StringMarshalling = StringMarshalling.Utf8)] public static partial int cuModuleGetFunction(out nint function, nint module, string name);
    [LibraryImport(CudaLibraryResolver.Driver, StringMarshalling = StringMarshalling.Utf8)]
    public static partial int cuModuleGetGlobal_v2(out ulong pointer, out nuint bytes, nint module, string name);
    [LibraryImport(CudaLibraryResolver.Driver)] public static partial int cuFuncSetAttribute(nint function, int attribute, int value);
    [LibraryImport(CudaLibraryResolver.Driver)]
    public static partial int cuLaunchKernel(nint function, uint gridX, uint gridY, uint gridZ, uint blockX, uint blockY, uint blockZ,
        uint sharedMemBytes, nint stream, void** kernelParams, void** extra);
    public const int CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES = 8;

    /// <summary>CUDA 12's launch with attributes (here: programmatic stream serialization).</summary>
    [LibraryImport(CudaLibraryResolver.Driver)] public static partial int cuLaunchKernelEx(LaunchConfig* config, nint function, void** kernelParams, void** extra);
    public const int CU_LAUNCH_ATTRIBUTE_PROGRAMMATIC_STREAM_SERIALIZATION = 6;

    /// <summary>CUlaunchConfig.</summary>
    [StructLayout(LayoutKind.Sequential)]
    public struct LaunchConfig
    {
        public uint GridDimX, GridDimY, GridDimZ, BlockDimX, BlockDimY, BlockDimZ, SharedMemBytes;
        public nint Stream;
        public LaunchAttribute* Attributes;
        public uint NumAttributes;
    }

    /// <summary>CUlaunchAttribute: the id, padding to 8 bytes, and a 64-byte value union whose first int is what the ids used here take.</summary>
    [StructLayout(LayoutKind.Explicit, Size = 72)]
    public struct LaunchAttribute
    {
        [FieldOffset(0)] public int Id;
        [FieldOffset(8)] public int Value;
    }

    [LibraryImport(CudaLibraryResolver.Driver)] public static partial int cuStreamBeginCapture_v2(nint stream, int mode);
    [LibraryImport(CudaLibraryResolver.Driver)] public static partial int cuStreamEndCapture(nint stream, out nint graph);
    [LibraryImport(CudaLibraryResolver.Driver)] public static partial int cuGraphInstantiateWithFlags(out nint graphExec, nint graph, ulong flags);
    [LibraryImport(CudaLibraryResolver.Driver)] public static partial int cuGraphLaunch(nint graphExec, nint stream);
    [LibraryImport(CudaLibraryResolver.Driver)] public static partial int cuGraphExecDestroy(nint graphExec);
    [LibraryImport(CudaLibraryResolver.Driver)] public static partial int cuGraphDestroy(nint graph);
    [LibraryImport(CudaLibraryResolver.Driver)] public static partial int cuGetErrorName(int result, out nint name);
    [LibraryImport(CudaLibraryResolver.Driver)] public static partial int cuGetErrorString(int result, out nint text);
    [LibraryImport(CudaLibraryResolver.Driver)] public static partial int cuProfilerStart();
    [LibraryImport(CudaLibraryResolver.Driver)] public static partial int cuProfilerStop();

    // CUDA IPC: device memory of one process mapped into another's (the custom all-reduce's peer buffers).
    public const uint CU_IPC_MEM_LAZY_ENABLE_PEER_ACCESS = 1;
    [LibraryImport(CudaLibraryResolver.Driver)] public static partial int cuIpcGetMemHandle(out CUipcMemHandle handle, ulong devicePtr);
    [LibraryImport(CudaLibraryResolver.Driver)] public static partial int cuIpcOpenMemHandle_v2(out ulong devicePtr, CUipcMemHandle handle, uint flags);
    [LibraryImport(CudaLibraryResolver.Driver)] public static partial int cuIpcCloseMemHandle(ulong devicePtr);
    [LibraryImport(CudaLibraryResolver.Driver)] public static partial int cuDeviceCanAccessPeer(out int canAccess, int device, int peerDevice);
    [LibraryImport(CudaLibraryResolver.Driver)] public static partial int cuDeviceGetPCIBusId(byte* busId, int length, int device);
    [LibraryImport(CudaLibraryResolver.Driver, StringMarshalling = StringMarshalling.Utf8)] public static partial int cuDeviceGetByPCIBusId(out int device, string busId);

    /// <summary>A strided device copy queued on a stream; recorded as a memcpy node when the stream captures.</summary>
    [LibraryImport(CudaLibraryResolver.Driver)] public static partial int cuMemcpy2DAsync_v2(CUDA_MEMCPY2D* copy, nint stream);
}

/// <summary>
/// CUDA_MEMCPY2D (cuda.h), for cuMemcpy2DAsync: <see cref="Height"/> rows of <see cref="WidthInBytes"/> bytes from rows
/// <see cref="SrcPitch"/> bytes apart to rows <see cref="DstPitch"/> bytes apart. The enum fields are 4 bytes, padded to 8
/// before the pointer that follows them, as Sequential layout pads them.
/// </summary>
[StructLayout(LayoutKind.Sequential)]
internal struct CUDA_MEMCPY2D
{
    public const int CU_MEMORYTYPE_DEVICE = 2;

    public nuint SrcXInBytes, SrcY;
    public int SrcMemoryType;
    public nint SrcHost;
    public ulong SrcDevice;
    public nint SrcArray;
    public nuint SrcPitch;
    public nuint DstXInBytes, DstY;
    public int DstMemoryType;
    public nint DstHost;
    public ulong DstDevice;
    public nint DstArray;
    public nuint DstPitch;
    public nuint WidthInBytes, Height;
}

/// <summary>CUipcMemHandle: 64 opaque bytes, passed by value as cuda.h declares it.</summary>
[StructLayout(LayoutKind.Sequential)]
internal unsafe struct CUipcMemHandle
{
    public const int Bytes = 64;

    public fixed byte Reserved[Bytes];
}

/// <summary>CUmemAllocationProp: pinned device memory on one GPU, no shareable handle.</summary>
[StructLayout(LayoutKind.Sequential)]
internal struct CUmemAllocationProp
{
    public const int CU_MEM_ALLOCATION_TYPE_PINNED = 1;
    public const int CU_MEM_LOCATION_TYPE_DEVICE = 1;

    public int Type;
    public int RequestedHandleTypes;
    public int LocationType;
    public int LocationId;
    public nint Win32HandleMetaData;
    public ulong AllocFlags;   // compressionType, gpuDirectRDMACapable, usage, reserved[4]: all zero

    public static CUmemAllocationProp OnDevice(int device) => new() { Type = CU_MEM_ALLOCATION_TYPE_PINNED, LocationType = CU_MEM_LOCATION_TYPE_DEVICE, LocationId = device };
}

/// <summary>CUmemAccessDesc: read-write access for one GPU.</summary>
[StructLayout(LayoutKind.Sequential)]
internal struct CUmemAccessDesc
{
    public const int CU_MEM_ACCESS_FLAGS_PROT_READWRITE = 3;

    public int LocationType;
    public int LocationId;
    public int Flags;

    public static CUmemAccessDesc ReadWrite(int device) => new() { LocationType = CUmemAllocationProp.CU_MEM_LOCATION_TYPE_DEVICE, LocationId = device, Flags = CU_MEM_ACCESS_FLAGS_PROT_READWRITE };
}

