using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Security.Cryptography;
using Celer.Models.Backend;
using Celer.Models.Weights;

namespace Celer.Engine.Tests.Distributed;

/// <summary>
/// The collectives the group tests run: a random sequence of all-reduces and all-gathers of odd shapes, each rank's
/// inputs following from the seed, step and rank, so a rank in another process runs the same sequence on the same data
/// without being told it, and the test can compute what every rank should end with.
/// </summary>
internal static unsafe class CollectiveSequence
{
    /// <summary>Rows 0 .. <see cref="Rows"/> − 1 take part (none, at times); the tensors have <see cref="Capacity"/> rows
    /// (at least one: a tensor of no rows has no columns), as an activation buffer has, and the rows past
    /// <see cref="Rows"/> must come back untouched.</summary>
    public sealed record Step(bool Gather, int Rows, int Capacity, int Columns);

    /// <summary>What fills an all-gather's output before the collective: the rows it must not write keep it.</summary>
    private const float Untouched = -7.25f;

    /// <summary>At most 9 rows of 99 columns: 3,564 bytes, so a slot of 4 KiB holds any step.</summary>
    public const long SlotBytes = 4096;

    public static Step[] Steps(int seed, int count)
    {
        var random = new Random(seed);
        var steps = new Step[count];
        for (int i = 0; i < count; i++)
        {
            int rows = random.Next(10);
            steps[i] = new Step(Gather: random.Next(3) == 0, rows, Capacity: Math.Max(1, rows + random.Next(3)), Columns: (2 * random.Next(50)) + 1);
        }

        return steps;
    }

    /// <summary>Rank <paramref name="rank"/>'s input at step <paramref name="index"/>: capacity × columns non-zero values
    /// of both signs spread over 2^-6 to 2^7, so sums cancel and round and the order of their terms shows in the bits.</summary>
    public static float[] Input(int seed, int index, Step step, int rank)
    {
        var random = new Random((seed * 1_000_003) + (index * 1009) + rank);
        var values = new float[step.Capacity * step.Columns];
        for (int i = 0; i < values.Length; i++)
        {
            double magnitude = (random.NextDouble() + 0.5) * Math.ScaleB(1, random.Next(-6, 7));
            values[i] = (float)(random.Next(2) == 0 ? magnitude : -magnitude);
        }

        return values;
    }

    /// <summary>Each rank on a thread of its own (opened there, as a worker joins its group) runs every step, now and then
    /// pausing a random moment so that the ranks drift apart (a fast rank reaches the next collective while a slow one
    /// still reads the last); returns the results by step and rank.</summary>
    public static Task<float[][][]> RunRanks(int size, Func<int, ICollectives> open, Step[] steps, float[][][] inputs, TimeSpan patience)
    {
        float[][][] results = [.. steps.Select(_ => new float[size][])];
        Task[] ranks = [.. Enumerable.Range(0, size).Select(rank => BroadcastTestSupport.OnOwnThread(() =>
        {
            ICollectives member = open(rank);
            var random = new Random(rank);
            for (int i = 0; i < steps.Length; i++)
            {
                results[i][rank] = Run(member, steps[i], inputs[i][rank]);
                if (random.Next(4) == 0)
                {
                    Thread.SpinWait(random.Next(20_000));
                }
            }
        }))];
        // (This class is unsafe, where no await may stand: the continuation hands back the results, or the first failure.)
        return Task.WhenAll(ranks).WaitAsync(patience, BroadcastTestSupport.Ct).ContinueWith(
            all =>
            {
                all.GetAwaiter().GetResult();
                return results;
            },
            BroadcastTestSupport.Ct, TaskContinuationOptions.None, TaskScheduler.Default);
    }

    /// <summary>Runs <paramref name="step"/> on <paramref name="member"/> with <paramref name="input"/> (left as it is)
    /// and returns what the rank holds afterwards: the reduced tensor, or the gathered output.</summary>
    public static float[] Run(ICollectives member, Step step, float[] input)
    {
        float[] x = Pinned(input);
        if (!step.Gather)
        {
            member.AllReduce(Over(x, step.Capacity, step.Columns), step.Rows);
            return x;
        }

        int width = step.Columns * member.Size;
        float[] output = Pinned(new float[step.Capacity * width]);
        output.AsSpan().Fill(Untouched);
        member.AllGatherColumns(Over(x, step.Capacity, step.Columns), step.Rows, Over(output, step.Capacity, width));
        // The tensor is only a pointer: without this the GC may free x while the other ranks still copy this rank's part.
        GC.KeepAlive(x);
        return output;
    }

    /// <summary>What rank <paramref name="rank"/> should hold after <paramref name="step"/>, computed element by element
    /// from every rank's input: sums in rank order, parts side by side, untouched rows as they were.</summary>
    public static float[] Expected(Step step, float[][] inputs, int rank)
    {
        int size = inputs.Length;
        if (!step.Gather)
        {
            float[] sum = (float[])inputs[rank].Clone();
            for (int i = 0; i < step.Rows * step.Columns; i++)
            {
                sum[i] = SumInOrder(inputs, i, Enumerable.Range(0, size));
            }

            return sum;
        }

        int width = step.Columns * size;
        float[] output = new float[step.Capacity * width];
        output.AsSpan().Fill(Untouched);
        for (int row = 0; row < step.Rows; row++)
        {
            for (int part = 0; part < size; part++)
            {
                inputs[part].AsSpan(row * step.Columns, step.Columns).CopyTo(output.AsSpan((row * width) + (part * step.Columns)));
            }
        }

        return output;
    }

    /// <summary>The sum of element <paramref name="i"/> over the ranks, added in the order given.</summary>
    public static float SumInOrder(float[][] inputs, int i, IEnumerable<int> order)
    {
        float total = 0;
        bool first = true;
        foreach (int rank in order)
        {
            total = first ? inputs[rank][i] : total + inputs[rank][i];
            first = false;
        }

        return total;
    }

    /// <summary>SHA-256 over the bits of each result, in order: what a rank process reports back.</summary>
    public static string Checksum(IEnumerable<float[]> results)
    {
        using var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        foreach (float[] result in results)
        {
            hash.AppendData(BitConverter.GetBytes(result.Length));
            hash.AppendData(MemoryMarshal.AsBytes(result.AsSpan()));
        }

        return Convert.ToHexString(hash.GetHashAndReset());
    }

    /// <summary>The values' bits, to compare results exactly (0.0 and −0.0 differ, NaNs compare).</summary>
    public static int[] Bits(float[] values) => MemoryMarshal.Cast<float, int>(values).ToArray();

    /// <summary>A copy of <paramref name="values"/> that the GC never moves, so a tensor can point into it.</summary>
    public static float[] Pinned(float[] values)
    {
        float[] copy = GC.AllocateUninitializedArray<float>(values.Length, pinned: true);
        values.CopyTo(copy, 0);
        return copy;
    }

    /// <summary>An fp32 tensor of <paramref name="rows"/> × <paramref name="columns"/> over a pinned array.</summary>
    public static Tensor Over(float[] pinned, int rows, int columns, DType dtype = DType.F32) =>
        new("x", (nint)Unsafe.AsPointer(ref MemoryMarshal.GetArrayDataReference(pinned)), dtype, [rows, columns]);
}
