namespace Celer.Models.Backend;

/// <summary>
/// The collective operations of a tensor-parallel group, over tensors in its backend's memory: each rank of the group
/// calls the same operations in the same order (every rank runs the same forward pass over its shard of the weights).
/// </summary>
public interface ICollectives
{
    /// <summary>This process's (or thread's) place in the group, 0 ≤ Rank &lt; <see cref="Size"/>.</summary>
    int Rank { get; }

    int Size { get; }

    /// <summary>Rows 0 .. <paramref name="rows"/> − 1 of <paramref name="x"/> become the sum over the ranks, on every rank.</summary>
    void AllReduce(Tensor x, int rows);

    /// <summary>
    /// Every rank's <paramref name="local"/> rows side by side: output[r, k · local.Columns + c] = local of rank k [r, c], on
    /// every rank (the vocabulary shards of the logits into whole rows).
    /// </summary>
    void AllGatherColumns(Tensor local, int rows, Tensor output);
}

/// <summary>The argument checks every <see cref="ICollectives"/> makes the same way, so each refuses with the same words.</summary>
public static class CollectiveArguments
{
    /// <summary>An all-gather's <paramref name="output"/> holds <paramref name="size"/> parts of <paramref name="local"/>'s columns side by side.</summary>
    public static void RequireGatherWidth(Tensor local, Tensor output, int size)
    {
        long columns = local.Columns, width = output.Columns;
        if (width != columns * size)
        {
            throw new ArgumentException($"Gathering {size} parts of {columns} columns needs {columns * size} output columns, not {width}.", nameof(output));
        }
    }
}
