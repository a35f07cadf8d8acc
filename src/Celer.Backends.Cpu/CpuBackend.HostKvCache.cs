using Celer.Models.Backend;

namespace Celer.Backends.Cpu;

/// <summary>
/// The host tier of the KV cache on the CPU. The "device" cache is host memory already, so the tier is a second, larger
/// pool laid out like the first (per layer, keys and values of [blocks, blockSize, kvHeads, headDim]), and a transfer is
/// a plain copy of each layer's block, done before the call returns: every load has finished when it is queued.
/// </summary>
public sealed unsafe partial class CpuBackend
{
    private byte*[] _hostKCache = [];
    private byte*[] _hostVCache = [];
    private int _numHostBlocks;
    private long _loadFence;

    public void AllocateHostKvCache(int numHostBlocks)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(numHostBlocks);
        if (_kCache.Length == 0)
        {
            throw new InvalidOperationException("The device KV cache must be allocated before its host tier.");
        }

        _numHostBlocks = numHostBlocks;
        _hostKCache = new byte*[_kCache.Length];
        _hostVCache = new byte*[_kCache.Length];
        for (int layer = 0; layer < _kCache.Length; layer++)
        {
            _hostKCache[layer] = AllocateOwned<byte>(numHostBlocks * _kvBlockLayerBytes);
            _hostVCache[layer] = AllocateOwned<byte>(numHostBlocks * _kvBlockLayerBytes);
        }
    }

    public void StoreKvBlocks(ReadOnlySpan<KvBlockCopy> copies) => Copy(copies, toHost: true);

    public long LoadKvBlocks(ReadOnlySpan<KvBlockCopy> copies)
    {
        Copy(copies, toHost: false);
        return ++_loadFence;
    }

    public bool KvLoadsDone(long fence, bool wait) => fence <= _loadFence;

    private void Copy(ReadOnlySpan<KvBlockCopy> copies, bool toHost)
    {
        long bytes = _kvBlockLayerBytes;
        foreach (KvBlockCopy copy in copies)
        {
            if ((uint)copy.HostBlock >= (uint)_numHostBlocks)
            {
                throw new ArgumentOutOfRangeException(nameof(copies), copy.HostBlock, $"The host KV cache has {_numHostBlocks} blocks.");
            }

            long device = copy.DeviceBlock * bytes, host = copy.HostBlock * bytes;
            for (int layer = 0; layer < _kCache.Length; layer++)
            {
                if (toHost)
                {
                    Buffer.MemoryCopy(_kCache[layer] + device, _hostKCache[layer] + host, bytes, bytes);
                    Buffer.MemoryCopy(_vCache[layer] + device, _hostVCache[layer] + host, bytes, bytes);
                }
                else
                {
                    Buffer.MemoryCopy(_hostKCache[layer] + host, _kCache[layer] + device, bytes, bytes);
                    Buffer.MemoryCopy(_hostVCache[layer] + host, _vCache[layer] + device, bytes, bytes);
                }
            }
        }
    }
}
