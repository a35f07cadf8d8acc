namespace Celer.Engine.Distributed;

/// <summary>
/// Guards one end of a broadcast queue: one call at a time (each end belongs to one thread; a second caller is a bug
/// and gets an exception rather than a torn message), and a <c>Dispose</c> on another thread, say a shutdown handler,
/// waits for the call in flight to leave the shared memory before it is unmapped, instead of pulling it from under a
/// thread that would then fault and take the process down. A waiting call sees <see cref="DisposeRequested"/> at its
/// next check (10 ms) and leaves with <see cref="ObjectDisposedException"/>.
/// </summary>
internal struct CallGate
{
    private const int Idle = 0, InCall = 1, Disposed = 2;
    private int _state;
    private int _disposeRequested;

    public readonly bool DisposeRequested => Volatile.Read(in _disposeRequested) != 0;

    public void Enter(object owner)
    {
        switch (Interlocked.CompareExchange(ref _state, InCall, Idle))
        {
            case InCall:
                throw new InvalidOperationException($"{owner.GetType().Name} was called from two threads at once; each one belongs to one thread.");
            case Disposed:
                throw new ObjectDisposedException(owner.GetType().Name);
        }
    }

    public void Exit() => Volatile.Write(ref _state, Idle);

    /// <summary>Waits for the call in flight, if any, to leave, then shuts the gate for good. False if already shut.</summary>
    public bool Close()
    {
        Volatile.Write(ref _disposeRequested, 1);
        var spinner = new SpinWait();
        while (true)
        {
            switch (Interlocked.CompareExchange(ref _state, Disposed, Idle))
            {
                case Idle:
                    return true;
                case Disposed:
                    return false;
            }

            spinner.SpinOnce();
        }
    }
}
