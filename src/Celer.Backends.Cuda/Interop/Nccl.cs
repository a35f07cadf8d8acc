using System.Runtime.InteropServices;

namespace Celer.Backends.Cuda.Interop;

/// <summary>
/// NCCL (libnccl.so.2), the collectives of a tensor-parallel group on GPUs, C names kept. Reference: nccl.h and
/// https://docs.nvidia.com/deeplearning/nccl/user-guide/docs/api.html. Every call returns an ncclResult_t, checked in one
/// place (<see cref="Check"/>). Nothing here asks for NVLink SHARP (multicast): whether NCCL uses it is NCCL's choice,
/// which <c>NCCL_NVLS_ENABLE=0</c> in the environment turns off (Celer leaves the environment alone).
/// </summary>
internal static unsafe partial class Nccl
{
    /// <summary>NCCL_UNIQUE_ID_BYTES.</summary>
    public const int UniqueIdBytes = 128;

    static Nccl() => CudaLibraryResolver.Register();

    /// <summary>Throws a <see cref="CudaException"/> with NCCL's name for the status and its last error message.</summary>
    public static void Check(ncclResult_t result, string call)
    {
        if (result != ncclResult_t.ncclSuccess)
        {
            throw new CudaException($"{call} failed: {Describe(result)}");
        }
    }

    /// <summary>The status's name and code, and NCCL's last warning, which names the cause (a peer, a CUDA call, a socket).</summary>
    public static string Describe(ncclResult_t result)
    {
        string text = Marshal.PtrToStringUTF8(ncclGetErrorString(result)) ?? "?";
        // NCCL keeps one last warning for the process, whatever communicator is passed (nccl.h takes one for later use).
        string? last = Marshal.PtrToStringUTF8(ncclGetLastError(0));
        return string.IsNullOrEmpty(last) ? $"{result} ({(int)result}): {text}" : $"{result} ({(int)result}): {text}: {last}";
    }

    /// <summary>ncclGetVersion: NCCL_VERSION_CODE, X·10000 + Y·100 + Z since 2.9 (X·1000 + Y·100 + Z before).</summary>
    [LibraryImport(CudaLibraryResolver.Nccl)] public static partial ncclResult_t ncclGetVersion(out int version);

    /// <summary>The id every rank passes to <see cref="ncclCommInitRank"/>; the process that makes it serves the ranks' rendezvous.</summary>
    [LibraryImport(CudaLibraryResolver.Nccl)] public static partial ncclResult_t ncclGetUniqueId(out ncclUniqueId uniqueId);

    /// <summary>
    /// Joins rank <paramref name="rank"/> of <paramref name="nranks"/> on the current device; returns once every rank has
    /// joined. The id goes by value: 128 bytes, which the x86-64 System V ABI passes in memory on the stack.
    /// </summary>
    [LibraryImport(CudaLibraryResolver.Nccl)] public static partial ncclResult_t ncclCommInitRank(out nint comm, int nranks, ncclUniqueId commId, int rank);

    /// <summary>Waits for the communicator's operations, then frees it (and, for the last rank of a process, for graphs that recorded them to go).</summary>
    [LibraryImport(CudaLibraryResolver.Nccl)] public static partial ncclResult_t ncclCommDestroy(nint comm);

    /// <summary>Stops the communicator's kernels still waiting for peers and frees it without waiting for its operations.</summary>
    [LibraryImport(CudaLibraryResolver.Nccl)] public static partial ncclResult_t ncclCommAbort(nint comm);

    /// <summary>An error NCCL met in the background (its proxy thread, a peer that left): ncclSuccess while healthy.</summary>
    [LibraryImport(CudaLibraryResolver.Nccl)] public static partial ncclResult_t ncclCommGetAsyncError(nint comm, out ncclResult_t asyncError);

    [LibraryImport(CudaLibraryResolver.Nccl)] public static partial nint ncclGetErrorString(ncclResult_t result);

    [LibraryImport(CudaLibraryResolver.Nccl)] public static partial nint ncclGetLastError(nint comm);

    /// <summary>In place when <paramref name="sendbuff"/> = <paramref name="recvbuff"/>; queued on <paramref name="stream"/> (recorded when it captures).</summary>
    [LibraryImport(CudaLibraryResolver.Nccl)]
    public static partial ncclResult_t ncclAllReduce(nint sendbuff, nint recvbuff, nuint count, ncclDataType_t datatype, ncclRedOp_t op, nint comm, nint stream);

    /// <summary>Rank i's <paramref name="sendcount"/> values land at recvbuff + i · sendcount.</summary>
    [LibraryImport(CudaLibraryResolver.Nccl)]
    public static partial ncclResult_t ncclAllGather(nint sendbuff, nint recvbuff, nuint sendcount, ncclDataType_t datatype, nint comm, nint stream);

    [LibraryImport(CudaLibraryResolver.Nccl)]
    public static partial ncclResult_t ncclBroadcast(nint sendbuff, nint recvbuff, nuint count, ncclDataType_t datatype, int root, nint comm, nint stream);

    /// <summary>Calls between the two are issued together (one thread driving several ranks must group them).</summary>
    [LibraryImport(CudaLibraryResolver.Nccl)] public static partial ncclResult_t ncclGroupStart();

    [LibraryImport(CudaLibraryResolver.Nccl)] public static partial ncclResult_t ncclGroupEnd();
}

/// <summary>ncclUniqueId: 128 opaque bytes, a plain struct so that it can be passed by value as nccl.h declares it.</summary>
[StructLayout(LayoutKind.Sequential, Size = Nccl.UniqueIdBytes)]
internal unsafe struct ncclUniqueId
{
    public fixed byte Internal[Nccl.UniqueIdBytes];
}

/// <summary>ncclResult_t (nccl.h).</summary>
internal enum ncclResult_t
{
    ncclSuccess = 0,
    ncclUnhandledCudaError = 1,
    ncclSystemError = 2,
    ncclInternalError = 3,
    ncclInvalidArgument = 4,
    ncclInvalidUsage = 5,
    ncclRemoteError = 6,
    ncclInProgress = 7,
    ncclTimeout = 8,
}

/// <summary>ncclDataType_t (nccl.h).</summary>
internal enum ncclDataType_t
{
    ncclInt8 = 0,
    ncclUint8 = 1,
    ncclInt32 = 2,
    ncclUint32 = 3,
    ncclInt64 = 4,
    ncclUint64 = 5,
    ncclFloat16 = 6,
    ncclFloat32 = 7,
    ncclFloat64 = 8,
    ncclBfloat16 = 9,
}

/// <summary>ncclRedOp_t (nccl.h): the built-in reductions.</summary>
internal enum ncclRedOp_t
{
    ncclSum = 0,
    ncclProd = 1,
    ncclMax = 2,
    ncclMin = 3,
    ncclAvg = 4,
}

/// <summary>
/// An NCCL communicator, destroyed on dispose (which waits for its operations). A communicator known to be broken (a peer
/// died) is aborted instead through <see cref="Abort"/>, which frees it without waiting for operations that never end.
/// </summary>
internal sealed class SafeNcclCommHandle : SafeHandle
{
    public SafeNcclCommHandle(nint comm)
        : base(0, ownsHandle: true) => SetHandle(comm);

    public override bool IsInvalid => handle == 0;

    /// <summary>Aborts the communicator; the handle is closed and never destroyed afterwards.</summary>
    public void Abort()
    {
        nint comm = handle;
        SetHandleAsInvalid();
        Nccl.Check(Nccl.ncclCommAbort(comm), "ncclCommAbort");
    }

    protected override bool ReleaseHandle() => Nccl.ncclCommDestroy(handle) == ncclResult_t.ncclSuccess;
}
