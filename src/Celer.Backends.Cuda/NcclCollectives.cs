using Celer.Backends.Cuda.Interop;
using Celer.Models.Backend;
using Celer.Models.Weights;

namespace Celer.Backends.Cuda;

/// <summary>
/// One rank of a tensor-parallel group on GPUs: an NCCL communicator bound to one <see cref="CudaBackend"/>, whose
/// collectives are queued on the backend's stream after the operators that produced their input, so a decode step
/// recorded as a CUDA graph records them too (NCCL ≥ 2.9 supports capture; the backend records in thread-local mode,
/// which NCCL asks for when each rank is a thread of one process). Every rank calls the same collectives in the same
/// order. The ranks meet through an id from <see cref="CreateUniqueId"/>, made once (rank 0's process) and handed to all.
/// <para>
/// NCCL picks its transports and algorithms itself. NVLink SHARP (multicast) is among them on NVSwitch machines;
/// <c>NCCL_NVLS_ENABLE=0</c> in the environment keeps it off, and nothing here overrides the environment or asks for
/// multicast.
/// </para>
/// <para>
/// Dispose the backend first: NCCL frees a communicator only once the graphs that recorded its operations are destroyed
/// (with several ranks in one process, all of theirs, when the last rank's communicator goes).
/// </para>
/// </summary>
public sealed unsafe class NcclCollectives : ICollectives, IDisposable
{
    // ncclGetLastError and ncclRemoteError (which the error messages rely on) came in 2.13; capture in 2.9, bf16 in 2.10.
    private const int MinimumVersion = 21300;

    private readonly CudaBackend _backend;
    private readonly SafeNcclCommHandle _comm;
    private readonly Lock _closing = new();   // Abort and Dispose (any thread) against AsyncError's use of the communicator
    private volatile State _state;
#pragma warning disable CA2213 // Grow puts it in the backend's allocations, which the backend's Dispose disposes
    private SafeDeviceMemoryHandle? _gathered;   // the rank-major parts of an all-gather, before they become columns
#pragma warning restore CA2213
    private long _gatheredBytes;
    private readonly CustomAllReduce? _custom;

    /// <summary>
    /// Joins rank <paramref name="rank"/> of a group of <paramref name="size"/> on <paramref name="backend"/>'s GPU; returns
    /// once every rank has joined (NCCL's rendezvous through the id's address, served by the process that made the id).
    /// </summary>
    /// <param name="uniqueId">The <see cref="CreateUniqueId"/> bytes, the same for every rank.</param>
    /// <param name="customAllReduce">
    /// Small all-reduces through <see cref="CustomAllReduce"/> where every rank's GPU can reach the others' (vLLM's
    /// <c>--disable-custom-all-reduce</c> is false here); the same value on every rank.
    /// </param>
    public NcclCollectives(CudaBackend backend, ReadOnlySpan<byte> uniqueId, int rank, int size, bool customAllReduce = true)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(size, 1);
        ArgumentOutOfRangeException.ThrowIfNegative(rank);
        ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual(rank, size);
        if (uniqueId.Length != Nccl.UniqueIdBytes)
        {
            throw new ArgumentException($"An NCCL unique id has {Nccl.UniqueIdBytes} bytes, not {uniqueId.Length}.", nameof(uniqueId));
        }

        RequireVersion();
        _backend = backend;
        Rank = rank;
        Size = size;
        ncclUniqueId id = default;
        uniqueId.CopyTo(new Span<byte>(id.Internal, Nccl.UniqueIdBytes));
        backend.Device.MakeCurrent();   // NCCL binds the communicator to the current device
        Nccl.Check(Nccl.ncclCommInitRank(out nint comm, size, id, rank), $"ncclCommInitRank (rank {rank} of {size} on {backend.Name})");
        _comm = new SafeNcclCommHandle(comm);
        if (customAllReduce && size > 1)
        {
            try
            {
                _custom = CustomAllReduce.TryCreate(backend, rank, size, AllGatherBytes, out string? whyNot);
                CustomAllReduceUnavailable = whyNot;
            }
            catch
            {
                _comm.Dispose();
                throw;
            }
        }
        else
        {
            CustomAllReduceUnavailable = size > 1 ? "turned off (--disable-custom-all-reduce)" : "one rank";
        }
    }

    private enum State
    {
        Open,
        Disposed,
        Aborted,
    }

    public int Rank { get; }

    public int Size { get; }

    /// <summary>Why small all-reduces go through NCCL rather than <see cref="CustomAllReduce"/>; null when they do not.</summary>
    public string? CustomAllReduceUnavailable { get; }

    /// <summary>The largest all-reduce in bytes that takes <see cref="CustomAllReduce"/> (0 when none does).</summary>
    public long CustomAllReduceBytes => _custom?.Capacity ?? 0;

    /// <summary>A new group's id: 128 bytes to hand to every rank's constructor. The process that calls this serves the ranks' rendezvous, so it must live until they have all joined.</summary>
    public static byte[] CreateUniqueId()
    {
        RequireVersion();
        Nccl.Check(Nccl.ncclGetUniqueId(out ncclUniqueId id), "ncclGetUniqueId");
        return new ReadOnlySpan<byte>(id.Internal, Nccl.UniqueIdBytes).ToArray();
    }

    /// <summary>True when NCCL's library is found (used to skip GPU tests without it).</summary>
    public static bool IsAvailable()
    {
        try
        {
            return Nccl.ncclGetVersion(out _) == ncclResult_t.ncclSuccess;
        }
        catch (Exception e) when (e is DllNotFoundException or CudaException or EntryPointNotFoundException)
        {
            return false;
        }
    }

    /// <summary>Sums rows 0 .. <paramref name="rows"/> − 1 of <paramref name="x"/> over the ranks, in place, in its dtype (bf16, fp16 or fp32).</summary>
    public void AllReduce(Tensor x, int rows)
    {
        CheckRows(x, rows, nameof(x));
        ncclDataType_t type = x.DType switch
        {
            DType.F32 => ncclDataType_t.ncclFloat32,
            DType.F16 => ncclDataType_t.ncclFloat16,
            DType.BF16 => ncclDataType_t.ncclBfloat16,
            _ => throw new NotSupportedException($"The NCCL all-reduce sums bf16, fp16 or fp32 activations, not {x.DType} ({x.Name})."),
        };
        nint comm = Communicator;
        if (rows > 0 && _custom?.TryAllReduce(x, rows) != true)
        {
            Check(Nccl.ncclAllReduce(x.Data, x.Data, (nuint)(rows * x.Columns), type, ncclRedOp_t.ncclSum, comm, _backend.Device.Stream), "ncclAllReduce");
        }
    }

    /// <summary>
    /// Gathers every rank's rows 0 .. <paramref name="rows"/> − 1 of <paramref name="local"/> side by side into
    /// <paramref name="output"/>'s rows: NCCL gathers them rank after rank into a buffer of this object, then one strided
    /// copy per rank puts each part into its columns (a memcpy node in a recorded graph). The values are moved as bytes,
    /// so any dtype goes. The buffer is sized at the first call for all of <paramref name="local"/>'s rows (the model's
    /// first, eager step), so graphs recorded later never see it move; a larger tensor later grows it and makes recorded
    /// graphs stale (as the backend's other buffers do), and is refused while a graph is being recorded.
    /// </summary>
    public void AllGatherColumns(Tensor local, int rows, Tensor output)
    {
        long columns = local.Columns, width = output.Columns;
        CollectiveArguments.RequireGatherWidth(local, output, Size);

        if (output.DType != local.DType)
        {
            throw new ArgumentException($"Gathering {local.DType} parts ({local.Name}) into a {output.DType} tensor ({output.Name}).", nameof(output));
        }

        CheckRows(local, rows, nameof(local));
        CheckRows(output, rows, nameof(output));
        nint comm = Communicator;
        if (rows == 0)
        {
            return;
        }

        ulong gathered = Gathered(Size * local.ByteLength);
        long element = local.DType.ByteSize(), partBytes = rows * columns * element;
        nint stream = _backend.Device.Stream;
        Check(Nccl.ncclAllGather(local.Data, (nint)gathered, (nuint)partBytes, ncclDataType_t.ncclUint8, comm, stream), "ncclAllGather");
        var copy = new CUDA_MEMCPY2D
        {
            SrcMemoryType = CUDA_MEMCPY2D.CU_MEMORYTYPE_DEVICE,
            SrcPitch = (nuint)(columns * element),
            DstMemoryType = CUDA_MEMCPY2D.CU_MEMORYTYPE_DEVICE,
            DstPitch = (nuint)(width * element),
            WidthInBytes = (nuint)(columns * element),
            Height = (nuint)rows,
        };
        for (int part = 0; part < Size; part++)
        {
            copy.SrcDevice = gathered + (ulong)(part * partBytes);
            copy.DstDevice = (ulong)output.Data + (ulong)(part * columns * element);
            CudaDriver.Check(CudaDriver.cuMemcpy2DAsync_v2(&copy, stream), "cuMemcpy2DAsync");
        }
    }

    /// <summary>
    /// What NCCL met in the background (a peer that left, a network or CUDA error in its proxy thread), or null while the
    /// communicator is healthy. Safe to poll from another thread while this rank runs a step.
    /// </summary>
    public string? AsyncError()
    {
        lock (_closing)
        {
            if (_state == State.Aborted)
            {
                return AbortedMessage;
            }

            ObjectDisposedException.ThrowIf(_state == State.Disposed, this);
            Nccl.Check(Nccl.ncclCommGetAsyncError(_comm.DangerousGetHandle(), out ncclResult_t error), "ncclCommGetAsyncError");
            return error is ncclResult_t.ncclSuccess or ncclResult_t.ncclInProgress ? null : $"Tensor-parallel rank {Rank}'s NCCL communicator failed: {Nccl.Describe(error)}";
        }
    }

    /// <summary>
    /// Aborts the communicator, from any thread (the engine's, when another rank's process died): NCCL's kernels still
    /// waiting for peers stop, so this rank's thread, blocked in a stream synchronize behind them, returns; every later
    /// collective on this object throws. NCCL then frees the communicator (with several ranks in one process, all of them
    /// once the last is aborted or disposed), and waits first for the graphs that recorded its operations to be
    /// destroyed: abort from another thread than the one that disposes the backend, or after disposing it.
    /// A collective that this rank's thread is queuing at that very moment may still use the communicator NCCL frees, so
    /// abort a rank whose thread waits on the GPU (or a peer), not one known to be running. A second call, or one after
    /// <see cref="Dispose"/>, does nothing.
    /// </summary>
    public void Abort()
    {
        lock (_closing)
        {
            if (_state != State.Open)
            {
                return;
            }

            _state = State.Aborted;
        }

        // The custom all-reduce's buffers stay allocated: a kernel may still be polling its flag (the process is going down).
        _custom?.Abort();
        _comm.Abort();
    }

    /// <summary>Destroys the communicator, which waits for its queued operations (call <see cref="Abort"/> instead when a rank is gone).</summary>
    public void Dispose()
    {
        lock (_closing)
        {
            if (_state != State.Open)
            {
                return;
            }

            _state = State.Disposed;
        }

        _custom?.Dispose();
        _comm.Dispose();
    }

    private string AbortedMessage => $"Tensor-parallel rank {Rank}'s NCCL communicator was aborted (a rank of the group failed); the group has to be set up again.";

    /// <summary>The communicator, for a collective of this rank's own thread.</summary>
    private nint Communicator => _state switch
    {
        State.Open => _comm.DangerousGetHandle(),
        State.Aborted => throw new CudaException(AbortedMessage),
        _ => throw new ObjectDisposedException(nameof(NcclCollectives)),
    };

    /// <summary>Names the rank only on failure: a step runs two collectives a layer and allocates nothing.</summary>
    private void Check(ncclResult_t result, string call)
    {
        if (result != ncclResult_t.ncclSuccess)
        {
            Nccl.Check(result, $"{call} on tensor-parallel rank {Rank} of {Size}");
        }
    }

    private static void CheckRows(Tensor x, int rows, string name)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(rows);
        if (rows > x.Rows)
        {
            throw new ArgumentOutOfRangeException(name, $"{rows} rows asked of {x}, which holds {x.Rows}.");
        }
    }

    private static void RequireVersion()
    {
        Nccl.Check(Nccl.ncclGetVersion(out int version), "ncclGetVersion");
        if (version < MinimumVersion)
        {
            // Before 2.9 the code was X·1000 + Y·100 + Z.
            string found = version >= 10000 ? $"{version / 10000}.{version / 100 % 100}.{version % 100}" : $"{version / 1000}.{version / 100 % 10}.{version % 100}";
            throw new CudaException($"NCCL {found} is older than 2.13, the oldest Celer's tensor parallelism runs on.");
        }
    }

    /// <summary>Every rank's <paramref name="mine"/> (all of one length), in rank order, through NCCL: the custom all-reduce's handshake.</summary>
    private byte[][] AllGatherBytes(byte[] mine)
    {
        nint stream = _backend.Device.Stream;
        var all = new byte[Size * mine.Length];
        using SafeDeviceMemoryHandle buffer = _backend.Device.Allocate(all.Length);
        fixed (byte* source = mine)
        fixed (byte* destination = all)
        {
            ulong own = buffer.Pointer + (ulong)(Rank * mine.Length);
            CudaDriver.Check(CudaDriver.cuMemcpyHtoDAsync_v2(own, source, (nuint)mine.Length, stream), "cuMemcpyHtoDAsync");
            Check(Nccl.ncclAllGather((nint)own, (nint)buffer.Pointer, (nuint)mine.Length, ncclDataType_t.ncclUint8, _comm.DangerousGetHandle(), stream), "ncclAllGather");
            CudaDriver.Check(CudaDriver.cuMemcpyDtoHAsync_v2(destination, buffer.Pointer, (nuint)all.Length, stream), "cuMemcpyDtoHAsync");
            _backend.Device.Synchronize();
        }

        return [.. Enumerable.Range(0, Size).Select(r => all.AsSpan(r * mine.Length, mine.Length).ToArray())];
    }

    private ulong Gathered(long bytes)
    {
        if (bytes > _gatheredBytes)
        {
            _gathered = _backend.Grow(_gathered, bytes, "all-gather buffer");
            _gatheredBytes = bytes;
        }

        return _gathered!.Pointer;
    }
}
