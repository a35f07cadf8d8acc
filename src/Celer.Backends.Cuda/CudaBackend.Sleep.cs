using Celer.Backends.Cuda.Interop;
using Celer.Models.Backend;

namespace Celer.Backends.Cuda;

/// <summary>
/// Sleep mode: with it on, the weights and the KV cache live in <see cref="VirtualMemoryRegion"/>s, whose physical memory
/// is given back while the model sleeps and mapped again at the same addresses when it wakes, so tensors and recorded
/// graphs need no change. Off (the default), they are plain cuMemAlloc allocations.
/// </summary>
public sealed partial class CudaBackend : ISleepMode
{
    // Physical memory is mapped in pieces of at least this size: a few hundred driver calls to wake an 8B model.
    private const long SleepChunkBytes = 64L << 20;

    private readonly VirtualMemoryRegion? _weightMemory, _kvMemory;

    // What a weight reload allocates besides the weights (the second model's activations), freed when it ends; null
    // when no reload runs.
    private List<SafeDeviceMemoryHandle>? _reloadAllocations;

    /// <summary>Whether the weights and KV cache can be released (constructed with sleep mode on).</summary>
    public bool SleepModeEnabled => _weightMemory is not null;

    public long WeightBytes => SleepRegion(_weightMemory).MappedBytes;

    public long KvCacheBytes => SleepRegion(_kvMemory).MappedBytes;

    public long? DeviceFreeBytes
    {
        get
        {
            _device.MakeCurrent();   // asked from other threads than the engine's (a server deciding which model sleeps)
            return _device.MemoryInfo().Free;
        }
    }

    public void ReleaseKvCache() => SleepRegion(_kvMemory).Release(backup: false);

    public void RestoreKvCache() => SleepRegion(_kvMemory).Restore();

    public void ReleaseWeights(bool backup) => SleepRegion(_weightMemory).Release(backup);

    public bool RestoreWeights() => SleepRegion(_weightMemory).Restore();

    public void BeginWeightReload()
    {
        SleepRegion(_weightMemory).BeginReplay();
        _reloadAllocations = [];
    }

    public bool EndWeightReload()
    {
        List<SafeDeviceMemoryHandle> others = _reloadAllocations ?? throw new InvalidOperationException("No weight reload is running.");
        _reloadAllocations = null;
        _device.Synchronize();   // the uploads into the weights are done before their staging and the scratch go
        foreach (SafeDeviceMemoryHandle memory in others)
        {
            memory.Dispose();
        }

        return _weightMemory!.EndReplay();
    }

    /// <summary>Device memory for a weight: in the weights' region with sleep mode on (taken again in a reload).</summary>
    private ulong AllocateWeight(long bytes)
    {
        _device.MakeCurrent();
        return _weightMemory?.Allocate(bytes) ?? Track(_device.Allocate(bytes)).Pointer;
    }

    private ulong AllocateKv(long bytes) => _kvMemory?.Allocate(bytes) ?? Track(_device.Allocate(bytes)).Pointer;

    /// <summary>Device memory that is no weight: tracked for the backend's lifetime, or, during a reload, until it ends.</summary>
    private SafeDeviceMemoryHandle AllocateOther(long bytes)
    {
        SafeDeviceMemoryHandle memory = _device.Allocate(bytes);
        if (_reloadAllocations is { } reload)
        {
            reload.Add(memory);
            return memory;
        }

        return Track(memory);
    }

    private static VirtualMemoryRegion SleepRegion(VirtualMemoryRegion? region) =>
        region ?? throw new InvalidOperationException("This backend was made without sleep mode (--enable-sleep-mode).");
}
