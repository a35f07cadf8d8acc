using System.Runtime.CompilerServices;

namespace Celer.Backends.Cpu.Kernels;

/// <summary>
/// How kernels split work over cores: a kernel states its total work and the smallest chunk worth a
/// task of its own; small problems stay on the calling thread, because handing chunks to other cores
/// (microseconds) costs more than a few hundred thousand flops. Chunks run on <see cref="WorkerTeam"/>.
/// </summary>
internal static unsafe class KernelScheduling
{
    /// <summary>Chunks per core; more than one lets a core that finishes early take another chunk.</summary>
    private const int ChunksPerCore = 4;

    public static int ChunkCount(long totalWork, long minWorkPerChunk, long maxChunks)
    {
        long byWork = Math.Max(1, totalWork / Math.Max(1, minWorkPerChunk));
        long cap = Math.Min(maxChunks, (long)Environment.ProcessorCount * ChunksPerCore);
        return (int)Math.Max(1, Math.Min(byWork, cap));
    }

    /// <summary>Runs <paramref name="loop"/> for chunks 0..chunks-1, in parallel when there is more than one chunk.</summary>
    public static void For<TLoop>(int chunks, ref TLoop loop) where TLoop : struct, IChunkLoop
    {
        if (chunks <= 1)
        {
            loop.Run(0);
            return;
        }

        WorkerTeam.For(chunks, ref loop);
    }

    /// <summary>The half-open range [start, end) of chunk <paramref name="chunk"/> of <paramref name="count"/> items.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static (int Start, int End) Range(int chunk, int chunks, int count, int granule = 1)
    {
        int units = (count + granule - 1) / granule;
        int start = (int)((long)units * chunk / chunks) * granule;
        int end = (int)((long)units * (chunk + 1) / chunks) * granule;
        return (Math.Min(start, count), Math.Min(end, count));
    }
}

/// <summary>
/// A parallel loop's body, <see cref="Run"/> once per chunk: a struct holding the kernel's arguments, so that starting a
/// loop allocates nothing (a lambda's closure and delegate would be two objects per kernel, every step).
/// </summary>
internal interface IChunkLoop
{
    void Run(int chunk);
}

/// <summary>
/// Per-thread scratch memory for packing and attention state, so hot paths allocate nothing after
/// warm-up. The array is pinned (never moves) and the pointer is aligned to a cache line.
/// A kernel takes one region per thread and carves it itself; nothing may hold it across a
/// parallel loop, since the calling thread also runs chunks.
/// </summary>
internal static unsafe class ThreadScratch
{
    private const int AlignFloats = 16;

    [ThreadStatic]
    private static float[]? s_buffer;

    public static float* Floats(int count)
    {
        float[]? buffer = s_buffer;
        if (buffer is null || buffer.Length < count + AlignFloats)
        {
            buffer = GC.AllocateUninitializedArray<float>(count + AlignFloats, pinned: true);
            s_buffer = buffer;
        }

        nint address = (nint)Unsafe.AsPointer(ref buffer[0]);
        nint aligned = (address + (AlignFloats * sizeof(float) - 1)) & ~(nint)(AlignFloats * sizeof(float) - 1);
        return (float*)aligned;
    }
}
