using Celer.Backends.Cuda.Interop;
using Celer.Models.Backend;

namespace Celer.Backends.Cuda;

/// <summary>
/// CUDA events around every step for <see cref="Timeline"/>: one recorded when a step begins (before its metadata
/// uploads and its first kernel), one each time the host is about to wait for the step's results. A step's times
/// are read at the next step's start, when its events have surely completed; two of each are kept, since the idle
/// time before step n needs step n−1's end. A step the host never waited on (a prompt chunk that samples nothing)
/// has no end: it and the gap after it are left out.
/// </summary>
public sealed unsafe partial class CudaBackend
{
    private SafeCudaEventHandle[]? _stepStart, _stepEnd;
    private int _stepsBegun;
    private readonly bool[] _stepEnded = new bool[2];

    /// <summary>Busy and idle time of the GPU over the steps run so far.</summary>
    public StepTimeline Timeline { get; } = new();

    private void MarkStepBegin()
    {
        if (_stepStart is null)
        {
            _stepStart = [NewEvent(), NewEvent()];
            _stepEnd = [NewEvent(), NewEvent()];
        }

        int n = _stepsBegun;
        if (n > 0 && _stepEnded[(n - 1) % 2])
        {
            float busy = Elapsed(_stepStart[(n - 1) % 2], _stepEnd![(n - 1) % 2]);
            float idle = n > 1 && _stepEnded[(n - 2) % 2] ? Elapsed(_stepEnd[(n - 2) % 2], _stepStart[(n - 1) % 2]) : 0f;
            Timeline.Add(busy, Math.Max(0f, idle));
        }

        CudaDriver.Check(CudaDriver.cuEventRecord(_stepStart[n % 2].DangerousGetHandle(), _device.Stream), "cuEventRecord");
        _stepsBegun++;
        _stepEnded[n % 2] = false;
    }

    /// <summary>Called just before the host synchronizes on a step's results (the last call of a step wins).</summary>
    private void MarkStepEnd()
    {
        if (_stepEnd is null || _stepsBegun == 0 || _capturing)
        {
            return;
        }

        CudaDriver.Check(CudaDriver.cuEventRecord(_stepEnd[(_stepsBegun - 1) % 2].DangerousGetHandle(), _device.Stream), "cuEventRecord");
        _stepEnded[(_stepsBegun - 1) % 2] = true;
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
