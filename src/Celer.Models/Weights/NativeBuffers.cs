using System.Runtime.InteropServices;

namespace Celer.Models.Weights;

/// <summary>
/// Native, 64-byte aligned buffers that a weight source hands out inside <see cref="WeightTensor"/>s (dequantized or
/// quantized copies of stored weights), all freed together when the source is disposed.
/// </summary>
internal sealed unsafe class NativeBuffers : IDisposable
{
    private readonly List<nint> _buffers = [];

    public nint Allocate(long bytes)
    {
        nint p = (nint)NativeMemory.AlignedAlloc((nuint)Math.Max(bytes, 1), 64);
        _buffers.Add(p);
        return p;
    }

    public void Dispose()
    {
        foreach (nint buffer in _buffers)
        {
            NativeMemory.AlignedFree((void*)buffer);
        }

        _buffers.Clear();
    }
}
