using Celer.Backends.Cuda.Interop;
using Celer.Models.Backend;

namespace Celer.Backends.Cuda;

/// <summary>
/// CUDA events around every step for <see cref="Timeline"/>: one recorded when a step begins (before its metadata
/// uploads and its first kernel), one each time the host is about to wait for the step's results or, with async
/// scheduling, when its sampled ids are queued for the host. A step's times are taken once its end event has
/// completed on the device, which with async scheduling is after the next step was launched: the events live in a
/// ring and are read in order, as they complete. A step the host never waited on (a prompt chunk that samples
/// nothing) has no end: it and the gap after it are left out.
/// </summary>
public sealed unsafe partial class CudaBackend
{
    private const int TimelineSlots = 8;    // twice the most steps left unread, so step i − 1's end is still there
    private const int MaxUnreadSteps = 4;

    private SafeCudaEventHandle[]? _stepStart, _stepEnd;
    private readonly bool[] _stepEnded = new bool[TimelineSlots];
    private int _stepsBegun, _stepsRead;

    /// <summary>Busy and idle time of the GPU over the steps run so far.</summary>
    public StepTimeline Timeline { get; } = new();

    private void MarkStepBegin()
    {
        if (_stepStart is null)
        {
            _stepStart = [.. Enumerable.Range(0, TimelineSlots).Select(_ => NewEvent())];
            _stepEnd = [.. Enumerable.Range(0, TimelineSlots).Select(_ => NewEvent())];
        }

        ReadFinishedSteps();
        int slot = _stepsBegun % TimelineSlots;
        CudaDriver.Check(CudaDriver.cuEventRecord(_stepStart[slot].DangerousGetHandle(), _device.Stream), "cuEventRecord");
        _stepEnded[slot] = false;
        _stepsBegun++;
    }

    /// <summary>
    /// Adds the steps before the current one whose events have completed, oldest first; waits for the oldest when too
    /// many are unread (a ring slot is about to be reused).
    /// </summary>
    private void ReadFinishedSteps()
    {
        while (_stepsRead < _stepsBegun)
        {
            int i = _stepsRead, slot = i % TimelineSlots;
            if (_stepEnded[slot])
            {
                nint end = _stepEnd![slot].DangerousGetHandle();
                int status = CudaDriver.cuEventQuery(end);
                if (status == CudaDriver.CUDA_ERROR_NOT_READY && _stepsBegun - i < MaxUnreadSteps)
                {
                    return;
                }

                if (status != 0)
                {
                    CudaDriver.Check(CudaDriver.cuEventSynchronize(end), "cuEventSynchronize");
                }

                int previous = (i - 1 + TimelineSlots) % TimelineSlots;
                float busy = Elapsed(_stepStart![slot], _stepEnd[slot]);
                float idle = i > 0 && _stepEnded[previous] ? Elapsed(_stepEnd[previous], _stepStart[slot]) : 0f;
                Timeline.Add(busy, Math.Max(0f, idle));
            }

            _stepsRead++;
        }
    }

    /// <summary>Called when a step's results are queued for the host (the last call of a step wins).</summary>
    private void MarkStepEnd()
    {
        if (_stepEnd is null || _stepsBegun == 0 || _capturing)
        {
            return;
        }

        int slot = (_stepsBegun - 1) % TimelineSlots;
        CudaDriver.Check(CudaDriver.cuEventRecord(_stepEnd[slot].DangerousGetHandle(), _device.Stream), "cuEventRecord");
        _stepEnded[slot] = true;
    }

    private SafeCudaEventHandle NewEvent()
    {
        CudaDriver.Check(CudaDriver.cuEventCreate(out nint evt, CudaDriver.CU_EVENT_DEFAULT), "cuEventCreate");
        return new SafeCudaEventHandle(evt, _device.Context);
    }

    private static float Elapsed(SafeCudaEventHandle from, SafeCudaEventHandle to)
    {
        CudaDriver.Check(CudaDriver.cuEventElapsedTime(out float ms, from.DangerousGetHandle(), to.DangerousGetHandle()), "cuEventElapsedTime");
        return ms;
    }
}
