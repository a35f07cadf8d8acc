using System.Text;
using Celer.Backends.Cuda.Interop;
using Celer.Models.Backend;
using Celer.Models.Weights;

namespace Celer.Backends.Cuda;

/// <summary>
/// The one-shot all-reduce of <c>custom_all_reduce.cu</c> for the small all-reduces of a tensor-parallel step (a decode
/// step's hidden rows), where GPUs of one host reach each other's memory: every rank's buffer is mapped into every rank's
/// process through CUDA IPC, and one kernel per call stages, synchronizes and sums (vLLM's custom all-reduce does the
/// same job; this is Celer's own). Messages over the capacity, or not a whole number of 16-byte vectors, are left to
/// NCCL by the caller (<see cref="TryAllReduce"/> returns false for them, the same answer on every rank).
/// <para>
/// Every rank makes one with the same arguments at the same point (<see cref="TryCreate"/> exchanges the buffers'
/// handles through the caller's all-gather), and then calls <see cref="TryAllReduce"/> on the same tensors in the same
/// order, eagerly or in recorded CUDA graphs alike: the kernel counts its calls in device memory.
/// </para>
/// </summary>
internal sealed unsafe class CustomAllReduce : IDisposable
{
    /// <summary>Bytes of one message at most by default: a step's hidden rows up to 1,024 tokens of a 4,096-wide model in bf16.</summary>
    public const long DefaultCapacity = 8L << 20;

    // What this rank tells the others: its buffer's IPC handle, its GPU's PCI bus id and its host's boot id.
    private const int BusIdBytes = 32, HostIdBytes = 64;
    private const int RecordBytes = CUipcMemHandle.Bytes + BusIdBytes + HostIdBytes, VerdictBytes = 256;

    private readonly CudaBackend _backend;
    private readonly SafeDeviceMemoryHandle _buffer;
    private readonly SafePinnedHostHandle _aborted;   // one u32 the kernel's wait polls (pinned host memory, mapped under UVA)
    private readonly ulong[] _peerMappings;   // the other ranks' buffers mapped here (0 at this rank's own index)
    private readonly AllReduceBuffers _buffers;
    private readonly int _blocks, _threads;
    private readonly Dictionary<DType, nint> _functions = [];

    private CustomAllReduce(CudaBackend backend, SafeDeviceMemoryHandle buffer, ulong[] peerMappings, int rank, int size, long capacity, int blocks, int threads)
    {
        _backend = backend;
        _buffer = buffer;
        _aborted = backend.Device.AllocatePinned(sizeof(uint));
        *(uint*)_aborted.DangerousGetHandle() = 0;
        _peerMappings = peerMappings;
        Rank = rank;
        Size = size;
        Capacity = capacity;
        _blocks = blocks;
        _threads = threads;
        for (int r = 0; r < size; r++)
        {
            _buffers.Base[r] = r == rank ? buffer.Pointer : peerMappings[r];
        }
    }

    public int Rank { get; }

    public int Size { get; }

    /// <summary>The largest message in bytes this path takes.</summary>
    public long Capacity { get; }

    /// <summary>
    /// Rank <paramref name="rank"/>'s part of a group of <paramref name="size"/> ranks, or null when some rank cannot
    /// join (another host, a GPU it cannot reach, a mapping that fails): then <paramref name="whyNot"/> says why, and
    /// every rank gets null, so all of them stay on NCCL. <paramref name="allGather"/> hands this rank's bytes to every
    /// rank and returns every rank's, in rank order; it is called twice, at the same point on every rank.
    /// </summary>
    public static CustomAllReduce? TryCreate(CudaBackend backend, int rank, int size, Func<byte[], byte[][]> allGather, out string? whyNot, long capacity = DefaultCapacity)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(size, 2);
        ArgumentOutOfRangeException.ThrowIfNegative(rank);
        ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual(rank, size);
        if (capacity <= 0 || capacity % 16 != 0)
        {
            throw new ArgumentOutOfRangeException(nameof(capacity), $"The capacity is a positive multiple of 16 bytes, not {capacity}.");
        }

        CudaDevice device = backend.Device;
        device.MakeCurrent();
        CudaKernels kernels = backend.Kernels;
        if (kernels.ReadInt("custom_all_reduce_layout", 0) != AllReduceBuffers.Ranks)
        {
            throw new CudaException($"custom_all_reduce.cu's AR_MAX_RANKS differs from AllReduceBuffers.Ranks ({AllReduceBuffers.Ranks}).");
        }

        int blocks = kernels.ReadInt("custom_all_reduce_layout", 1), threads = kernels.ReadInt("custom_all_reduce_layout", 2);
        int dataOffset = kernels.ReadInt("custom_all_reduce_layout", 4);

        SafeDeviceMemoryHandle buffer = device.Allocate(dataOffset + (2 * capacity));
        var peerMappings = new ulong[size];
        try
        {
            // Signals and counters start at zero on every rank before any rank can see the buffer (the exchange below).
            CudaDriver.Check(CudaDriver.cuMemsetD32Async(buffer.Pointer, 0, (nuint)(dataOffset / 4), device.Stream), "cuMemsetD32Async");
            device.Synchronize();
            CudaDriver.Check(CudaDriver.cuIpcGetMemHandle(out CUipcMemHandle handle, buffer.Pointer), "cuIpcGetMemHandle");
            byte[][] records = allGather(Record(handle, device));
            whyNot = size > AllReduceBuffers.Ranks ? $"the custom all-reduce takes at most {AllReduceBuffers.Ranks} ranks" : Map(records, rank, peerMappings);
            byte[][] verdicts = allGather(Verdict(whyNot));
            whyNot ??= verdicts.Select((v, r) => v[0] != 0 ? $"rank {r}: {Encoding.UTF8.GetString(v.AsSpan().TrimEnd((byte)0))}" : null).FirstOrDefault(v => v is not null);
            if (whyNot is not null)
            {
                Unmap(peerMappings);
                buffer.Dispose();
                return null;
            }

            return new CustomAllReduce(backend, buffer, peerMappings, rank, size, capacity, blocks, threads);
        }
        catch
        {
            Unmap(peerMappings);
            buffer.Dispose();
            throw;
        }
    }

    /// <summary>
    /// Sums rows 0 .. <paramref name="rows"/> − 1 of <paramref name="x"/> over the ranks, in place, and returns true; or
    /// returns false, doing nothing, when the message is not one this path takes (over <see cref="Capacity"/>, not whole
    /// 16-byte vectors or not 16-byte aligned, another dtype than fp32/fp16/bf16). Every rank must answer alike, which
    /// holds because the ranks run the same model code on buffers laid out alike: the same shapes, dtypes and offsets.
    /// </summary>
    public bool TryAllReduce(Tensor x, int rows)
    {
        long bytes = rows * x.Columns * x.DType.ByteSize();
        if (x.DType is not (DType.F32 or DType.F16 or DType.BF16) || bytes > Capacity || bytes % 16 != 0 || x.Data % 16 != 0)
        {
            return false;
        }

        if (bytes == 0)
        {
            return true;
        }

        ulong data = (ulong)x.Data;
        long vectors = bytes / 16, capacity = Capacity;
        int rank = Rank, size = Size;
        AllReduceBuffers buffers = _buffers;
        nint aborted = _aborted.DangerousGetHandle();
        void** args = stackalloc void*[] { &data, &data, &vectors, &buffers, &rank, &size, &capacity, &aborted };
        _backend.Kernels.Launch(Function(x.DType), "custom_all_reduce", (uint)_blocks, 1, 1, (uint)_threads, args);
        return true;
    }

    /// <summary>
    /// Ends the waits of this rank's calls for peers, now and later, from any thread (a peer's process died): the kernels
    /// return without a valid sum, so the stream drains and the group can be torn down.
    /// </summary>
    public void Abort() => Volatile.Write(ref *(uint*)_aborted.DangerousGetHandle(), 1u);

    public void Dispose()
    {
        Unmap(_peerMappings);
        _buffer.Dispose();
        _aborted.Dispose();
    }

    /// <summary>A rank's reason not to join as a fixed-size message (empty: it joins), cut to fit.</summary>
    private static byte[] Verdict(string? whyNot)
    {
        var verdict = new byte[VerdictBytes];
        byte[] text = Encoding.UTF8.GetBytes(whyNot ?? string.Empty);
        text.AsSpan(0, Math.Min(text.Length, VerdictBytes - 1)).CopyTo(verdict);
        return verdict;
    }

    private static byte[] Record(CUipcMemHandle handle, CudaDevice device)
    {
        var record = new byte[RecordBytes];
        new ReadOnlySpan<byte>(handle.Reserved, CUipcMemHandle.Bytes).CopyTo(record);
        fixed (byte* busId = &record[CUipcMemHandle.Bytes])
        {
            CudaDriver.Check(CudaDriver.cuDeviceGetPCIBusId(busId, BusIdBytes, device.Handle), "cuDeviceGetPCIBusId");
        }

        Encoding.ASCII.GetBytes(HostId(), record.AsSpan(CUipcMemHandle.Bytes + BusIdBytes, HostIdBytes));
        return record;
    }

    /// <summary>Maps every other rank's buffer into this process, or says why it cannot; null when all are mapped.</summary>
    private static string? Map(byte[][] records, int rank, ulong[] peerMappings)
    {
        ReadOnlySpan<byte> ownHost = records[rank].AsSpan(CUipcMemHandle.Bytes + BusIdBytes);
        int ownDevice = DeviceOf(records[rank]) ?? throw new CudaException("This rank's own GPU was not found by its PCI bus id.");
        for (int peer = 0; peer < records.Length; peer++)
        {
            if (peer == rank)
            {
                continue;
            }

            if (!records[peer].AsSpan(CUipcMemHandle.Bytes + BusIdBytes).SequenceEqual(ownHost))
            {
                return $"rank {peer} runs on another host";
            }

            if (DeviceOf(records[peer]) is not int peerDevice)
            {
                return $"rank {peer}'s GPU ({BusId(records[peer])}) is not visible to rank {rank}";
            }

            // A GPU reaches its own memory; another only with peer access (NVLink or PCIe P2P).
            if (peerDevice != ownDevice)
            {
                CudaDriver.Check(CudaDriver.cuDeviceCanAccessPeer(out int canAccess, ownDevice, peerDevice), "cuDeviceCanAccessPeer");
                if (canAccess == 0)
                {
                    return $"GPU {BusId(records[rank])} cannot access GPU {BusId(records[peer])}'s memory (no peer-to-peer path)";
                }
            }

            CUipcMemHandle handle = default;
            records[peer].AsSpan(0, CUipcMemHandle.Bytes).CopyTo(new Span<byte>(handle.Reserved, CUipcMemHandle.Bytes));
            int status = CudaDriver.cuIpcOpenMemHandle_v2(out ulong mapped, handle, CudaDriver.CU_IPC_MEM_LAZY_ENABLE_PEER_ACCESS);
            if (status != 0)
            {
                // The same process (ranks as threads) or a container without the peer's IPC namespace: NCCL still works.
                return $"rank {peer}'s buffer could not be mapped (cuIpcOpenMemHandle returned {status})";
            }

            peerMappings[peer] = mapped;
        }

        return null;
    }

    private static void Unmap(ulong[] peerMappings)
    {
        for (int peer = 0; peer < peerMappings.Length; peer++)
        {
            if (peerMappings[peer] != 0)
            {
                _ = CudaDriver.cuIpcCloseMemHandle(peerMappings[peer]);   // at teardown: a failure leaves nothing to do
                peerMappings[peer] = 0;
            }
        }
    }

    private static int? DeviceOf(byte[] record) =>
        CudaDriver.cuDeviceGetByPCIBusId(out int device, BusId(record)) == 0 ? device : null;

    private static string BusId(byte[] record)
    {
        ReadOnlySpan<byte> id = record.AsSpan(CUipcMemHandle.Bytes, BusIdBytes);
        int end = id.IndexOf((byte)0);
        return Encoding.ASCII.GetString(end < 0 ? id : id[..end]);
    }

    /// <summary>The kernel's boot id: processes that share it share a host (containers of one pod included).</summary>
    private static string HostId()
    {
        const string BootId = "/proc/sys/kernel/random/boot_id";
        string id = File.Exists(BootId) ? File.ReadAllText(BootId).Trim() : Environment.MachineName;
        return id.Length > HostIdBytes ? id[..HostIdBytes] : id;
    }

    private nint Function(DType dtype)
    {
        if (!_functions.TryGetValue(dtype, out nint function))
        {
            function = _backend.Kernels.Function(dtype switch { DType.F32 => "custom_all_reduce_f32", DType.F16 => "custom_all_reduce_f16", _ => "custom_all_reduce_bf16" });
            _functions[dtype] = function;
        }

        return function;
    }

    /// <summary>The kernel's AllReduceBuffers: every rank's buffer as mapped into this process, by value in the launch.</summary>
    private struct AllReduceBuffers
    {
        public const int Ranks = 8;   // AR_MAX_RANKS

        public fixed ulong Base[Ranks];
    }
}
