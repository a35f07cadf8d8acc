using Celer.Engine;
using Celer.Engine.Scheduling;

namespace Celer.Server.Tests.Support;

/// <summary>
/// The memory of one GPU that several models share, for tests of models taking turns on a device on machines without
/// one: each model holds a fixed number of bytes while awake and none while asleep, and taking more than is free fails
/// as cuMemCreate would.
/// </summary>
internal sealed class SimulatedDevice(long capacity)
{
    private readonly Lock _gate = new();
    private long _free = capacity;

    public long Free
    {
        get
        {
            lock (_gate)
                return _free;
        }
    }

    public void Take(long bytes)
    {
        lock (_gate)
        {
            if (bytes > _free)
                throw new InvalidOperationException($"Out of device memory: {bytes} bytes asked, {_free} free.");
            _free -= bytes;
        }
    }

    public void Give(long bytes)
    {
        lock (_gate)
            _free += bytes;
    }
}

/// <summary>
/// The real CPU model runner (sleep mode on) as if its weights and KV cache were <paramref name="bytes"/> of a
/// <see cref="SimulatedDevice"/>: it takes them when made and on waking, and gives them back when it sleeps.
/// </summary>
internal sealed class SharedDeviceExecutor : IModelExecutor
{
    private readonly IModelExecutor _inner;
    private readonly SimulatedDevice _device;
    private readonly long _bytes;
    private volatile bool _asleep;

    public SharedDeviceExecutor(IModelExecutor inner, SimulatedDevice device, long bytes)
    {
        _inner = inner;
        _device = device;
        _bytes = bytes;
        device.Take(bytes);
    }

    public int NumKvBlocks => _inner.NumKvBlocks;

    public int NumHostKvBlocks => _inner.NumHostKvBlocks;

    public long HostKvBlockBytes => _inner.HostKvBlockBytes;

    public bool SupportsSleep => _inner.SupportsSleep;

    public long BytesToWake => _asleep ? _bytes : 0;

    public long? DeviceFreeBytes => _device.Free;

    public void Sleep(int level)
    {
        _inner.Sleep(level);
        if (!_asleep)
        {
            _device.Give(_bytes);
            _asleep = true;
        }
    }

    public void WakeUp(bool weights, bool kvCache)
    {
        if (_asleep)
        {
            _device.Take(_bytes);
            _asleep = false;
        }

        _inner.WakeUp(weights, kvCache);
    }

    public ModelRunnerOutput Execute(SchedulerOutput schedulerOutput) => _inner.Execute(schedulerOutput);

    public void Dispose() => _inner.Dispose();
}
