using Celer.Models.Backend;

namespace Celer.Engine.Execution;

/// <summary>Sleep mode: the runner gives its backend's memory back and takes it again, loading the weights anew after level 2.</summary>
public sealed partial class ModelRunner
{
    private readonly Action? _reloadWeights;
    private bool _weightsReleased, _kvCacheReleased;

    public bool SupportsSleep => _reloadWeights is not null;

    public void Sleep(int level)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(level, 1);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(level, 2);
        ISleepMode sleep = SleepMode;
        if (_requests.Count > 0 || _inFlight is not null)
        {
            throw new InvalidOperationException($"The model cannot sleep with {_requests.Count} requests in the runner{(_inFlight is null ? "" : " and a step running")}.");
        }

        if (!_kvCacheReleased)
        {
            sleep.ReleaseKvCache();
            _kvCacheReleased = true;
        }

        if (!_weightsReleased)
        {
            sleep.ReleaseWeights(backup: level == 1);
            _weightsReleased = true;
        }
    }

    public void WakeUp(bool weights, bool kvCache)
    {
        ISleepMode sleep = SleepMode;
        if (weights && _weightsReleased)
        {
            if (!sleep.RestoreWeights())
            {
                _reloadWeights!();
            }

            _weightsReleased = false;
        }

        if (kvCache && _kvCacheReleased)
        {
            sleep.RestoreKvCache();
            _kvCacheReleased = false;
        }
    }

    public long BytesToWake => _reloadWeights is null ? 0
        : (_weightsReleased ? SleepMode.WeightBytes : 0) + (_kvCacheReleased ? SleepMode.KvCacheBytes : 0);

    public long? DeviceFreeBytes => _reloadWeights is null ? null : SleepMode.DeviceFreeBytes;

    private ISleepMode SleepMode => _reloadWeights is not null
        ? (ISleepMode)_backend
        : throw new InvalidOperationException("The model was loaded without sleep mode (--enable-sleep-mode).");
}
