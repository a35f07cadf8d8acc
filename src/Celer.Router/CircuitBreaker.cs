namespace Celer.Router;

/// <summary>A circuit's state, as the router's <c>/metrics</c> reports it (the numbers are the gauge's values).</summary>
public enum CircuitState
{
    /// <summary>Requests flow.</summary>
    Closed = 0,

    /// <summary>Too many consecutive failures: no request is sent until the cooldown has passed.</summary>
    Open = 1,

    /// <summary>The cooldown has passed: one request goes through as a trial, and its answer closes or reopens the circuit.</summary>
    HalfOpen = 2,
}

/// <summary>What <see cref="CircuitBreaker.TryAcquire"/> allowed a request.</summary>
public enum CircuitPermit
{
    /// <summary>Send it elsewhere.</summary>
    Denied,

    /// <summary>The circuit is closed.</summary>
    Normal,

    /// <summary>The half-open circuit's one trial: its outcome decides the circuit.</summary>
    Trial,
}

/// <summary>
/// A backend's circuit breaker, as Envoy's outlier detection and resilience libraries have it: after
/// <c>failureThreshold</c> consecutive failures (no connection, or a 5xx answer) the circuit opens and the backend gets no
/// requests for <c>cooldown</c>; then one trial request is let through, whose success closes the circuit and whose failure
/// opens it for another cooldown. Unlike health-check ejection it reacts to what requests get, which a backend answering
/// <c>/health</c> but failing requests (a broken model, a full disk) never shows. A threshold of 0 turns it off.
/// </summary>
public sealed class CircuitBreaker(int failureThreshold, TimeSpan cooldown, TimeProvider time)
{
    private readonly Lock _lock = new();
    private CircuitState _state = CircuitState.Closed;
    private int _consecutiveFailures;
    private long _openedAt;
    private bool _trialInFlight;

    public TimeSpan Cooldown => cooldown;

    /// <summary>The state now; an open circuit whose cooldown has passed reads as half-open (its next request is the trial).</summary>
    public CircuitState State
    {
        get
        {
            lock (_lock)
                return Current();
        }
    }

    /// <summary>Whether a request could be let through now: closed, or half-open with its trial not yet taken.</summary>
    public bool AllowsRequests
    {
        get
        {
            lock (_lock)
                return Current() switch { CircuitState.Closed => true, CircuitState.HalfOpen => !_trialInFlight, _ => false };
        }
    }

    /// <summary>Lets a request through, or not; a request let through must end in <see cref="Record"/> or <see cref="Release"/>.</summary>
    public CircuitPermit TryAcquire()
    {
        lock (_lock)
        {
            switch (Current())
            {
                case CircuitState.Closed:
                    return CircuitPermit.Normal;
                case CircuitState.HalfOpen when !_trialInFlight:
                    _trialInFlight = true;
                    return CircuitPermit.Trial;
                default:
                    return CircuitPermit.Denied;
            }
        }
    }

    /// <summary>The backend answered (<paramref name="success"/>: a status below 500) or could not be reached.</summary>
    /// <returns>The new state when this outcome changed it, else null.</returns>
    public CircuitState? Record(CircuitPermit permit, bool success)
    {
        lock (_lock)
        {
            if (permit == CircuitPermit.Trial)
            {
                _trialInFlight = false;
                return success ? Close() : Open();
            }
            // An answer to a request sent before the circuit opened says nothing about the backend now.
            if (failureThreshold == 0 || _state != CircuitState.Closed)
                return null;
            if (success)
            {
                _consecutiveFailures = 0;
                return null;
            }
            return ++_consecutiveFailures >= failureThreshold ? Open() : null;
        }
    }

    /// <summary>A request let through ended without a verdict (its client left before the backend answered).</summary>
    public void Release(CircuitPermit permit)
    {
        if (permit != CircuitPermit.Trial)
            return;
        lock (_lock)
            _trialInFlight = false;
    }

    private CircuitState Current()
    {
        if (_state == CircuitState.Open && time.GetElapsedTime(_openedAt) >= cooldown)
            _state = CircuitState.HalfOpen;
        return _state;
    }

    private CircuitState Open()
    {
        _state = CircuitState.Open;
        _openedAt = time.GetTimestamp();
        return CircuitState.Open;
    }

    private CircuitState Close()
    {
        _state = CircuitState.Closed;
        _consecutiveFailures = 0;
        return CircuitState.Closed;
    }
}
