namespace Celer.Engine.Execution;

/// <summary>Weight loading progress: tensors and bytes done so far out of the totals (null when unknown).</summary>
public readonly record struct ModelLoadProgress(int TensorsLoaded, int? TotalTensors, long BytesLoaded, long? TotalBytes);
