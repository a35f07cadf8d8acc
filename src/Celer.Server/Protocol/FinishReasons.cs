using Celer.Engine;

namespace Celer.Server.Protocol;

/// <summary>The wire spelling of <see cref="FinishReason"/>: "stop" | "length" | "abort".</summary>
internal static class FinishReasons
{
    public static string ToWire(FinishReason reason) => reason switch
    {
        FinishReason.Stop => "stop",
        FinishReason.Length => "length",
        FinishReason.Abort => "abort",
        _ => throw new ArgumentOutOfRangeException(nameof(reason), reason, null),
    };

    public static string? ToWire(FinishReason? reason) => reason is { } r ? ToWire(r) : null;
}
