namespace Celer.Engine.Scheduling;

/// <summary>Lifecycle of an engine request (vLLM's <c>RequestStatus</c>); everything after
/// <see cref="Preempted"/> is a finished state.</summary>
public enum RequestStatus
{
    Waiting,
    Running,
    Preempted,
    FinishedStopped,
    FinishedLengthCapped,
    FinishedAborted,
}

public static class RequestStatusExtensions
{
    public static bool IsFinished(this RequestStatus status) => status > RequestStatus.Preempted;

    public static FinishReason? ToFinishReason(this RequestStatus status) => status switch
    {
        RequestStatus.FinishedStopped => FinishReason.Stop,
        RequestStatus.FinishedLengthCapped => FinishReason.Length,
        RequestStatus.FinishedAborted => FinishReason.Abort,
        _ => null,
    };
}
