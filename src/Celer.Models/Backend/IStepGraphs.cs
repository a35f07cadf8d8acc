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

    /// <summary>
    /// Sizes the per-step metadata buffers (token ids, positions, slots, block tables, attention work lists) for
    /// the largest step the engine can schedule, before any graph is recorded: a buffer that grew later would move
    /// and leave every recorded graph pointing at freed memory.
    /// </summary>
    void ReserveStepMetadata(int maxTokens, int maxSequences, int maxBlocksPerSequence);
}

/// <summary>
/// How the model may use step graphs: the decode batch sizes recorded (ascending; a batch runs padded to the
/// smallest size that holds it, eagerly above the largest) and the fixed block-table stride.
/// </summary>
public sealed record StepGraphOptions(IReadOnlyList<int> CaptureSizes, int BlockTableStride)
{
    /// <summary>vLLM's capture sizes below 8.</summary>
    private static readonly int[] SmallSizes = [1, 2, 4];

    /// <summary>The largest decode batch that runs as a graph.</summary>
    public int MaxBatchSize => CaptureSizes[^1];

    /// <summary>The recorded size a batch of <paramref name="batchSize"/> runs padded to; int.MaxValue above the largest.</summary>
    public int Bucket(int batchSize)
    {
        foreach (int size in CaptureSizes)
        {
            if (size >= batchSize)
            {
                return size;
            }
        }

        return int.MaxValue;
    }

    /// <summary>
    /// vLLM's default capture sizes up to <paramref name="max"/>: 1, 2, 4, every multiple of 8 below 256, then every
    /// multiple of 16.
    /// </summary>
    public static int[] DefaultSizes(int max) =>
        [.. SmallSizes.Concat(Enumerable.Range(1, 31).Select(i => 8 * i)).Concat(Enumerable.Range(16, 1 << 12).Select(i => 16 * i).TakeWhile(s => s <= max)).Where(s => s <= max)];
}
