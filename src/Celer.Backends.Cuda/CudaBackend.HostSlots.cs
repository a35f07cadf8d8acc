using System.Runtime.InteropServices;
using Celer.Backends.Cuda.Interop;
using Celer.Models.Backend;
using Celer.Models.Weights;

namespace Celer.Backends.Cuda;

/// <summary>
/// <see cref="IModelBackend.QueueCopyToHost"/>'s two host slots: pinned memory that a step's rows reach by an async copy
/// queued behind its kernels, and an event per slot recorded after each copy, so the host waits for one step's rows
/// while the next step, queued after them, already runs (async pooling). Rows in a 16-bit model dtype travel as they
/// are and are widened to fp32 when read. A slot grows at the first copy of a step, which the host queues only after
/// it read the slot's previous rows, so no copy is in flight into memory it frees.
/// </summary>
public sealed unsafe partial class CudaBackend
{
    private readonly SafePinnedHostHandle?[] _hostSlots = new SafePinnedHostHandle?[2];
    private readonly long[] _hostSlotBytes = new long[2];
    private readonly DType[] _hostSlotDType = new DType[2];            // the dtype of the step's rows in each slot
    private readonly float[][] _hostSlotWidened = [[], []];             // 16-bit rows as fp32, for ReadHostSlot
    private readonly SafeCudaEventHandle?[] _hostSlotCopied = new SafeCudaEventHandle?[2];

    public bool QueuesWork => true;

    public void QueueCopyToHost(Tensor x, int rows, int slot, int atRow, int stepRows)
    {
        if (x.DType is not (DType.F32 or DType.BF16 or DType.F16) || (atRow > 0 && x.DType != _hostSlotDType[slot]))
        {
            throw new ArgumentException($"'{x.Name}' is {x.DType}: a host slot takes the fp32 or 16-bit rows of one dtype per step.", nameof(x));
        }

        long rowBytes = x.Columns * x.DType.ByteSize();
        _device.MakeCurrent();
        if (atRow == 0)
        {
            _hostSlotDType[slot] = x.DType;
            if (_hostSlotBytes[slot] < stepRows * rowBytes)
            {
                _hostSlots[slot]?.Dispose();
                _hostSlots[slot] = _device.AllocatePinned(stepRows * rowBytes);
                _hostSlotBytes[slot] = stepRows * rowBytes;
                _hostSlotCopied[slot] ??= NewEvent();
            }
        }

        if ((atRow + rows) * rowBytes > _hostSlotBytes[slot])
        {
            throw new ArgumentOutOfRangeException(nameof(rows), $"Rows {atRow}..{atRow + rows} go past the {stepRows} rows host slot {slot} was sized for.");
        }

        MarkStepEnd();
        byte* destination = (byte*)_hostSlots[slot]!.DangerousGetHandle() + (atRow * rowBytes);
        CudaDriver.Check(CudaDriver.cuMemcpyDtoHAsync_v2(destination, (ulong)x.Data, (nuint)(rows * rowBytes), _device.Stream), "cuMemcpyDtoH");
        CudaDriver.Check(CudaDriver.cuEventRecord(_hostSlotCopied[slot]!.DangerousGetHandle(), _device.Stream), "cuEventRecord");
    }

    public ReadOnlySpan<float> ReadHostSlot(int slot, int count)
    {
        if (count == 0)
        {
            return [];
        }

        DType type = _hostSlotDType[slot];
        if ((long)count * type.ByteSize() > _hostSlotBytes[slot])
        {
            throw new ArgumentOutOfRangeException(nameof(count), $"Host slot {slot} holds {_hostSlotBytes[slot] / type.ByteSize()} values, not {count}.");
        }

        CudaDriver.Check(CudaDriver.cuEventSynchronize(_hostSlotCopied[slot]!.DangerousGetHandle()), "cuEventSynchronize");
        void* pinned = (void*)_hostSlots[slot]!.DangerousGetHandle();
        if (type == DType.F32)
        {
            return new ReadOnlySpan<float>(pinned, count);
        }

        if (_hostSlotWidened[slot].Length < count)
        {
            _hostSlotWidened[slot] = new float[count];
        }

        Span<float> widened = _hostSlotWidened[slot].AsSpan(0, count);
        var raw = new ReadOnlySpan<ushort>(pinned, count);
        if (type == DType.BF16)
        {
            HalfConversions.Bf16ToFloat(raw, widened);
        }
        else
        {
            HalfConversions.HalfToFloat(MemoryMarshal.Cast<ushort, Half>(raw), widened);
        }

        return widened;
    }

    private void DisposeHostSlots()
    {
        foreach (IDisposable? handle in _hostSlots.Concat<IDisposable?>(_hostSlotCopied))
        {
            handle?.Dispose();
        }
    }
}
