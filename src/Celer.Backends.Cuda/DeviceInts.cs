using Celer.Backends.Cuda.Interop;

namespace Celer.Backends.Cuda;

/// <summary>A device array of int32 metadata (token ids, positions, slot mapping…) that grows to the largest step seen.</summary>
/// <param name="inGraphs">Whether recorded graphs read it (then growing it makes them stale).</param>
internal sealed class DeviceInts(CudaBackend backend, bool inGraphs = true)
{
    private SafeDeviceMemoryHandle? _memory;
    private int _capacity;

    public ulong Pointer => _memory?.Pointer ?? 0;

    public void Upload(ReadOnlySpan<int> values)
    {
        if (values.Length > _capacity)
        {
            Reserve(Math.Max(values.Length, _capacity * 2));
        }

        if (values.Length > 0)
        {
            backend.UploadAsync(Pointer, values);
        }
    }

    /// <summary>Makes room for <paramref name="count"/> values now (the largest step), so no later step moves the buffer.</summary>
    public void Reserve(int count)
    {
        if (count > _capacity)
        {
            _capacity = count;
            _memory = backend.Grow(_memory, (long)_capacity * sizeof(int), "step metadata", inGraphs);
        }
    }
}
