namespace Celer.Models.Backend;

/// <summary>
/// A backend that can record the operators of one step once and replay them (CUDA graphs), which removes the
/// per-kernel launch cost that dominates small decode steps. Recording needs every buffer at a fixed address, so
/// the model pads decode batches to a few sizes ("buckets") and records one graph per bucket, as vLLM does.
/// </summary>
public interface IStepGraphs
{
    /// <summary>Launches the graph recorded for this bucket, if it is still valid; false means record one.</summary>
    bool TryReplay(int bucket);

    /// <summary>Starts recording: the operators called until <see cref="EndCapture"/> are recorded, not run.</summary>
    void BeginCapture();

    /// <summary>Stops recording, keeps the graph for <paramref name="bucket"/> and launches it once.</summary>
    void EndCapture(int bucket);

    /// <summary>Stops a recording that failed part-way, so the backend can run steps again.</summary>
    void AbortCapture();
}

/// <summary>How the model may use step graphs: the largest decode batch recorded and the fixed block-table stride.</summary>
public sealed record StepGraphOptions(int MaxBatchSize, int BlockTableStride)
{
    /// <summary>vLLM's capture sizes: 1, 2, 4, then every multiple of 8.</summary>
    public int Bucket(int batchSize) => batchSize <= 4 ? (batchSize <= 1 ? 1 : batchSize <= 2 ? 2 : 4) : (batchSize + 7) / 8 * 8;
}
