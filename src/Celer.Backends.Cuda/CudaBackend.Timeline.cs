using Celer.Backends.Cuda.Interop;
using Celer.Models.Backend;

namespace Celer.Backends.Cuda;

/// <summary>
/// CUDA events around every step for <see cref="Timeline"/>: one recorded when a step begins (before its metadata
/// uploads and its first kernel), one each time the host is about to wait for the step's results or, with async
/// scheduling, when its sampled ids are queued for the host. With async scheduling the host also works between a
/// step's forward pass and its sampling (it reads the previous step's ids first): an event pair around that gap
/// (recorded when the host starts waiting, and when it queues the sampling) counts it as idle, not busy. A step's
/// times are taken once its end event has completed on the device, which with async scheduling is after the next
/// step was launched: the events live in a ring and are read in order, as they complete. A step the host never
/// waited on (a prompt chunk that samples nothing) has no end: it and the gap after it are left out.
/// </summary>
public sealed unsafe partial class CudaBackend
{
    private const int TimelineSlots = 8;    // twice the most steps left unread, so step i − 1's end is still there
    private const int MaxUnreadSteps = 4;

    private SafeCudaEventHandle[]? _stepStart, _stepEnd, _gapStart, _gapEnd;
    private readonly bool[] _stepEnded = new bool[TimelineSlots];
    private readonly int[] _gapState = new int[TimelineSlots];   // 0: none, 1: the host began waiting, 2: and then sampled
    private int _stepsBegun, _stepsRead, _stepSampled;

    /// <summary>Busy and idle time of the GPU over the steps run so far.</summary>
    public StepTimeline Timeline { get; } = new();

    private void MarkStepBegin()
    {
        if (_stepStart is null)
        {
            _stepStart = [.. Enumerable.Range(0, TimelineSlots).Select(_ => NewEvent())];
            _stepEnd = [.. Enumerable.Range(0, TimelineSlots).Select(_ => NewEvent())];
            _gapStart = [.. Enumerable.Range(0, TimelineSlots).Select(_ => NewEvent())];
            _gapEnd = [.. Enumerable.Range(0, TimelineSlots).Select(_ => NewEvent())];
        }

        ReadFinishedSteps();
        MarkProfiledStep(_stepsBegun);
        int slot = _stepsBegun % TimelineSlots;
        CudaDriver.Check(CudaDriver.cuEventRecord(_stepStart[slot].DangerousGetHandle(), _device.Stream), "cuEventRecord");
        _stepEnded[slot] = false;
        _gapState[slot] = 0;
        _stepsBegun++;
    }

    /// <summary>The host starts waiting for earlier results while the current step's forward pass is queued, unsampled.</summary>
    private void MarkHostGapBegin()
    {
        int slot = (_stepsBegun - 1) % TimelineSlots;
        if (_gapStart is null || _stepsBegun == 0 || _stepSampled == _stepsBegun || _gapState[slot] != 0)
        {
            return;
        }

        CudaDriver.Check(CudaDriver.cuEventRecord(_gapStart[slot].DangerousGetHandle(), _device.Stream), "cuEventRecord");
        _gapState[slot] = 1;
    }

    /// <summary>The current step's sampling is queued: the end of a host gap, if one began.</summary>
    private void MarkSamplingQueued()
    {
        int slot = (_stepsBegun - 1) % TimelineSlots;
        if (_gapEnd is not null && _stepsBegun > 0 && _gapState[slot] == 1)
        {
            CudaDriver.Check(CudaDriver.cuEventRecord(_gapEnd[slot].DangerousGetHandle(), _device.Stream), "cuEventRecord");
            _gapState[slot] = 2;
        }

        _stepSampled = _stepsBegun;
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
                float idle = i > 0 && _stepEnded[previous] ? Math.Max(0f, Elapsed(_stepEnd[previous], _stepStart[slot])) : 0f;
                if (_gapState[slot] == 2)
                {
                    float gap = Math.Clamp(Elapsed(_gapStart![slot], _gapEnd![slot]), 0f, busy);
                    busy -= gap;
                    idle += gap;
                }

                Timeline.Add(busy, idle);
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
