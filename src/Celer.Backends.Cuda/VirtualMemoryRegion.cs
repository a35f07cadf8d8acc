using Celer.Backends.Cuda.Interop;

namespace Celer.Backends.Cuda;

/// <summary>
/// Device memory that can be given back and taken again at the same addresses, for sleep mode (vLLM's CuMemAllocator):
/// a virtual address range reserved once, allocations bumped through it, and physical memory mapped under them in
/// chunks that the range keeps contiguous. <see cref="Release"/> unmaps and frees the chunks, copying their bytes to
/// pinned host memory first when asked; <see cref="Restore"/> maps new physical memory at the same addresses and copies
/// the backup back (which stays, pinned, for the next sleep). Every pointer into the region (tensors, kernel arguments, recorded CUDA graphs) stays valid
/// across both. Allocations are not freed one by one: the weights and the KV cache live as long as the backend.
/// </summary>
internal sealed unsafe class VirtualMemoryRegion : IDisposable
{
    private const long Alignment = 256;

    private readonly CudaDevice _device;
    private readonly string _what;
    private readonly long _minChunkBytes;
    private readonly long _granularity;
    private readonly ulong _base;
    private readonly long _reserved;
    private readonly List<(long Offset, long Bytes)> _chunks = [];
    private readonly List<ulong> _handles = [];   // one per chunk while mapped; empty while released
    private readonly List<(long Offset, long Bytes)> _allocations = [];
    private long _used, _mapped;
    private SafePinnedHostHandle? _backup;   // the bytes in use, kept in pinned host memory from the first sleep with a backup on
    private bool _restoreFromBackup;          // the last release copied the bytes to the backup
    private int _replayNext = -1;   // the next allocation a reload takes again; -1: not reloading

    /// <param name="what">The memory's purpose, for messages ("weights", "KV cache").</param>
    /// <param name="reserveBytes">The address range to reserve: the most this region can ever hold.</param>
    /// <param name="minChunkBytes">Physical memory is mapped in pieces of at least this many bytes (fewer driver calls to wake).</param>
    public VirtualMemoryRegion(CudaDevice device, string what, long reserveBytes, long minChunkBytes)
    {
        _device = device;
        _what = what;
        device.MakeCurrent();
        CUmemAllocationProp prop = CUmemAllocationProp.OnDevice(device.Handle);
        CudaDriver.Check(CudaDriver.cuMemGetAllocationGranularity(out nuint granularity, prop, 0), "cuMemGetAllocationGranularity");
        _granularity = (long)granularity;
        _minChunkBytes = RoundUp(minChunkBytes, _granularity);
        _reserved = RoundUp(reserveBytes, _granularity);
        CudaDriver.Check(CudaDriver.cuMemAddressReserve(out _base, (nuint)_reserved, 0, 0, 0), $"cuMemAddressReserve({_reserved} bytes)");
    }

    /// <summary>Bytes handed out (the backup's size).</summary>
    public long UsedBytes => _used;

    /// <summary>Physical bytes under the region while it is mapped.</summary>
    public long MappedBytes => _mapped;

    public bool IsReleased { get; private set; }

    public ulong Allocate(long bytes)
    {
        if (IsReleased)
        {
            throw new InvalidOperationException($"The {_what} memory is released (the model sleeps).");
        }

        bytes = Math.Max(bytes, 1);
        if (_replayNext >= 0)
        {
            if (_replayNext >= _allocations.Count || _allocations[_replayNext].Bytes != bytes)
            {
                throw new InvalidOperationException(
                    $"Reloading the {_what} asked for {bytes} bytes as allocation {_replayNext}; the first load made {_allocations.Count} allocations"
                    + (_replayNext < _allocations.Count ? $", that one of {_allocations[_replayNext].Bytes} bytes." : "."));
            }

            return _base + (ulong)_allocations[_replayNext++].Offset;
        }

        long offset = RoundUp(_used, Alignment), end = offset + bytes;
        if (end > _reserved)
        {
            throw new CudaException($"The {_what} need {end} bytes; the GPU has {_reserved}.");
        }

        if (end > _mapped)
        {
            MapChunk(_mapped, RoundUp(Math.Max(end - _mapped, _minChunkBytes), _granularity));
        }

        _used = end;
        _allocations.Add((offset, bytes));
        return _base + (ulong)offset;
    }

    /// <summary>
    /// Gives the physical memory back, after copying the bytes in use to pinned host memory when <paramref name="backup"/>.
    /// The caller has finished every use of the memory (the device is synchronized here before the copy).
    /// </summary>
    public void Release(bool backup)
    {
        if (IsReleased)
        {
            return;
        }

        _device.MakeCurrent();
        CudaDriver.Check(CudaDriver.cuCtxSynchronize(), "cuCtxSynchronize");
        if (backup && _used > 0)
        {
            // Pinning and unpinning host memory take seconds for an 8B model's 15 GiB (the copies a fraction of one),
            // so the backup is kept from one sleep to the next; a sleep without backup (level 2) gives it back.
            _backup ??= _device.AllocatePinned(_used);
            CudaDriver.Check(CudaDriver.cuMemcpyDtoHAsync_v2((void*)_backup.DangerousGetHandle(), _base, (nuint)_used, _device.Stream), "cuMemcpyDtoH");
            _device.Synchronize();
            _restoreFromBackup = true;
        }
        else
        {
            _backup?.Dispose();
            _backup = null;
            _restoreFromBackup = false;
        }

        Unmap();
        IsReleased = true;
    }

    /// <summary>
    /// Maps physical memory at the region's addresses again. Returns true when the bytes came back from a backup; false
    /// when their contents are undefined (released without one).
    /// </summary>
    public bool Restore()
    {
        if (!IsReleased)
        {
            return true;
        }

        _device.MakeCurrent();
        foreach ((long offset, long bytes) in _chunks)
        {
            _handles.Add(CreateAndMap(offset, bytes));
        }

        IsReleased = false;
        if (!_restoreFromBackup)
        {
            return false;
        }

        CudaDriver.Check(CudaDriver.cuMemcpyHtoDAsync_v2(_base, (void*)_backup!.DangerousGetHandle(), (nuint)_used, _device.Stream), "cuMemcpyHtoD");
        _device.Synchronize();
        return true;
    }

    /// <summary>The same allocations, in the same order and sizes, are asked for again: each gets its old address.</summary>
    public void BeginReplay()
    {
        if (IsReleased || _replayNext >= 0)
        {
            throw new InvalidOperationException($"The {_what} memory is {(IsReleased ? "released" : "already being reloaded")}.");
        }

        _replayNext = 0;
    }

    /// <summary>Ends a replay; false when it did not ask for every allocation again.</summary>
    public bool EndReplay()
    {
        int taken = _replayNext;
        _replayNext = -1;
        return taken == _allocations.Count;
    }

    public void Dispose()
    {
        _device.MakeCurrent();
        if (!IsReleased)
        {
            Unmap();
        }

        _backup?.Dispose();
        _ = CudaDriver.cuMemAddressFree(_base, (nuint)_reserved);
    }

    private void MapChunk(long offset, long bytes)
    {
        _device.MakeCurrent();
        _handles.Add(CreateAndMap(offset, bytes));
        _chunks.Add((offset, bytes));
        _mapped = offset + bytes;
    }

    private ulong CreateAndMap(long offset, long bytes)
    {
        int device = _device.Handle;
        CudaDriver.Check(CudaDriver.cuMemCreate(out ulong handle, (nuint)bytes, CUmemAllocationProp.OnDevice(device), 0), $"cuMemCreate({bytes} bytes of {_what})");
        try
        {
            CudaDriver.Check(CudaDriver.cuMemMap(_base + (ulong)offset, (nuint)bytes, 0, handle, 0), "cuMemMap");
            CudaDriver.Check(CudaDriver.cuMemSetAccess(_base + (ulong)offset, (nuint)bytes, CUmemAccessDesc.ReadWrite(device), 1), "cuMemSetAccess");
        }
        catch
        {
            _ = CudaDriver.cuMemRelease(handle);
            throw;
        }

        return handle;
    }

    private void Unmap()
    {
        for (int i = 0; i < _handles.Count; i++)
        {
            (long offset, long bytes) = _chunks[i];
            CudaDriver.Check(CudaDriver.cuMemUnmap(_base + (ulong)offset, (nuint)bytes), "cuMemUnmap");
            CudaDriver.Check(CudaDriver.cuMemRelease(_handles[i]), "cuMemRelease");
        }

        _handles.Clear();
    }

    private static long RoundUp(long value, long multiple) => (value + multiple - 1) / multiple * multiple;
}
