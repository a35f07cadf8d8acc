using System.Runtime.InteropServices;
using Celer.Models.Backend;

namespace Celer.Backends.Cpu;

/// <summary>
/// Sleep mode on the CPU: the KV cache's memory goes back to the system while the model sleeps. The weights stay: they
/// are host memory already (read in place from the memory-mapped checkpoint, or converted once at load), which is
/// where level 1 would move them and what level 2 would read them from again.
/// </summary>
public sealed unsafe partial class CpuBackend : ISleepMode
{
    private bool _kvReleased;

    public long WeightBytes => 0;

    public long KvCacheBytes => 2L * _kCache.Length * _kvLayerBytes;

    public long? DeviceFreeBytes => null;

    public void ReleaseKvCache()
    {
        if (_kvReleased)
        {
            return;
        }

        foreach (byte*[] cache in new[] { _kCache, _vCache })
        {
            for (int layer = 0; layer < cache.Length; layer++)
            {
                _owned.Remove((nint)cache[layer]);
                NativeMemory.AlignedFree(cache[layer]);
                cache[layer] = null;
            }
        }

        _kvReleased = true;
    }

    public void RestoreKvCache()
    {
        if (_kvReleased)
        {
            AllocateKvLayers();
            _kvReleased = false;
        }
    }

    public void ReleaseWeights(bool backup)
    {
    }

    public bool RestoreWeights() => true;

    public void BeginWeightReload() => throw new InvalidOperationException("The CPU backend never releases its weights, so it never reloads them.");

    public bool EndWeightReload() => throw new InvalidOperationException("The CPU backend never releases its weights, so it never reloads them.");
}
