using Celer.Backends.Cuda.Interop;
using Celer.Models.Backend;
using Celer.Models.Weights;

namespace Celer.Backends.Cuda;

/// <summary>
/// <see cref="IModelBackend.QueueCopyToHost"/>'s two host slots: pinned memory that a step's rows reach by an async copy
/// queued behind its kernels, and an event per slot recorded after each copy, so the host waits for one step's rows
/// while the next step, queued after them, already runs (async pooling). A slot grows at the first copy of a step,
/// which the host queues only after it read the slot's previous rows, so no copy is in flight into memory it frees.
/// </summary>
public sealed unsafe partial class CudaBackend
{
    private readonly SafePinnedHostHandle?[] _hostSlots = new SafePinnedHostHandle?[2];
    private readonly long[] _hostSlotFloats = new long[2];
    private readonly SafeCudaEventHandle?[] _hostSlotCopied = new SafeCudaEventHandle?[2];

    public bool QueuesWork => true;

    public void QueueCopyToHost(Tensor x, int rows, int slot, int atRow, int stepRows)
    {
        if (x.DType != DType.F32)
        {
            throw new ArgumentException($"'{x.Name}' is {x.DType}: host slots take fp32 rows.", nameof(x));
        }

        long columns = x.Columns;
        _device.MakeCurrent();
        if (atRow == 0 && _hostSlotFloats[slot] < stepRows * columns)
        {
            _hostSlots[slot]?.Dispose();
            _hostSlots[slot] = _device.AllocatePinned(stepRows * columns * sizeof(float));
            _hostSlotFloats[slot] = stepRows * columns;
            _hostSlotCopied[slot] ??= NewEvent();
        }

        if ((atRow + rows) * columns > _hostSlotFloats[slot])
        {
            throw new ArgumentOutOfRangeException(nameof(rows), $"Rows {atRow}..{atRow + rows} go past the {stepRows} rows host slot {slot} was sized for.");
        }

        MarkStepEnd();
        float* destination = (float*)_hostSlots[slot]!.DangerousGetHandle() + (atRow * columns);
        CudaDriver.Check(CudaDriver.cuMemcpyDtoHAsync_v2(destination, (ulong)x.Data, (nuint)(rows * columns * sizeof(float)), _device.Stream), "cuMemcpyDtoH");
        CudaDriver.Check(CudaDriver.cuEventRecord(_hostSlotCopied[slot]!.DangerousGetHandle(), _device.Stream), "cuEventRecord");
    }

    public ReadOnlySpan<float> ReadHostSlot(int slot, int count)
    {
        if (count == 0)
        {
            return [];
        }

        if (count > _hostSlotFloats[slot])
        {
            throw new ArgumentOutOfRangeException(nameof(count), $"Host slot {slot} holds {_hostSlotFloats[slot]} values, not {count}.");
        }

        CudaDriver.Check(CudaDriver.cuEventSynchronize(_hostSlotCopied[slot]!.DangerousGetHandle()), "cuEventSynchronize");
        return new ReadOnlySpan<float>((void*)_hostSlots[slot]!.DangerousGetHandle(), count);
    }

    private void DisposeHostSlots()
    {
        foreach (IDisposable? handle in _hostSlots.Concat<IDisposable?>(_hostSlotCopied))
        {
            handle?.Dispose();
        }
    }
}
