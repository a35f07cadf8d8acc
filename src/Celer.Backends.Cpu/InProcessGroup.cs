using Celer.Models.Backend;
using Celer.Models.Weights;

namespace Celer.Backends.Cpu;

/// <summary>
/// A tensor-parallel group whose ranks are threads of one process, each with its own CPU backend (fp32 activations in
/// host memory): every collective is a meeting at a barrier where each rank publishes its tensor, and ranks read each
/// other's memory directly. An all-reduce sums each element over the ranks in rank order (rank 0 + rank 1 + …) into a
/// shared buffer, each rank summing its own stripe of the elements, so every rank ends with bit-identical values.
/// A rank that does not reach a collective within <see cref="Patience"/> (it failed, or the ranks ran different steps)
/// makes the others throw instead of waiting forever.
/// </summary>
public sealed unsafe class InProcessGroup : IDisposable
{
    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(60);

    private readonly Barrier _barrier;
    private readonly nint[] _published;
    private float[] _sum = [];

    public InProcessGroup(int size)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(size, 1);
        Size = size;
        _barrier = new Barrier(size);
        _published = new nint[size];
    }

    public int Size { get; }

    /// <summary>The collectives of rank <paramref name="rank"/>, for the model that rank builds.</summary>
    public ICollectives Member(int rank)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(rank);
        ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual(rank, Size);
        return new Rank(this, rank);
    }

    public void Dispose() => _barrier.Dispose();

    private void Meet(int rank, string operation)
    {
        if (!_barrier.SignalAndWait(Patience))
        {
            throw new TimeoutException($"Tensor-parallel rank {rank} waited {Patience.TotalSeconds:F0} s for the other ranks at {operation}: one failed or ran another step.");
        }
    }

    private static float* Floats(Tensor x, string operation) => HostCollectives.Floats(x, "in-process group", operation);

    private void AllReduce(int rank, Tensor x, int rows)
    {
        long count = rows * x.Columns;
        float* own = Floats(x, "all-reduce");
        if (rank == 0 && _sum.Length < count)
        {
            // Nobody reads the buffer until every rank has published (the first barrier): the last user finished at the
            // previous collective's final barrier.
            _sum = new float[count];
        }

        _published[rank] = (nint)own;
        Meet(rank, "an all-reduce");
        long stripe = (count + Size - 1) / Size, lo = Math.Min(count, rank * stripe), hi = Math.Min(count, lo + stripe);
        fixed (float* sum = _sum)
        {
            for (long i = lo; i < hi; i++)
            {
                float total = ((float*)_published[0])[i];
                for (int r = 1; r < Size; r++)
                {
                    total += ((float*)_published[r])[i];
                }

                sum[i] = total;
            }

            Meet(rank, "an all-reduce");
            new ReadOnlySpan<float>(sum, checked((int)count)).CopyTo(new Span<float>(own, checked((int)count)));
        }

        Meet(rank, "an all-reduce");   // the sums are read by all before the next collective writes them
    }

    private void AllGatherColumns(int rank, Tensor local, int rows, Tensor output)
    {
        int columns = checked((int)local.Columns), width = checked((int)output.Columns);
        CollectiveArguments.RequireGatherWidth(local, output, Size);

        _published[rank] = (nint)Floats(local, "all-gather");
        float* gathered = Floats(output, "all-gather");
        Meet(rank, "an all-gather");
        for (int r = 0; r < Size; r++)
        {
            HostCollectives.PlaceColumns((float*)_published[r], rows, columns, gathered, width, r);
        }

        Meet(rank, "an all-gather");   // every part is read before its rank writes it again
    }

    private sealed class Rank(InProcessGroup group, int rank) : ICollectives
    {
        int ICollectives.Rank => rank;

        public int Size => group.Size;

        public void AllReduce(Tensor x, int rows) => group.AllReduce(rank, x, rows);

        public void AllGatherColumns(Tensor local, int rows, Tensor output) => group.AllGatherColumns(rank, local, rows, output);
    }
}
