using System.Runtime.InteropServices;

namespace Celer.Benchmarks;

/// <summary>Cache-line-aligned native memory filled with random values in ±[0.05, 1), freed on dispose.</summary>
internal sealed unsafe class NativeBuffer : IDisposable
{
    public NativeBuffer(long bytes, Random? fill = null)
    {
        Bytes = bytes;
        Pointer = NativeMemory.AlignedAlloc((nuint)Math.Max(bytes, 1), 64);
        if (fill is not null)
        {
            for (long i = 0; i < bytes / sizeof(float); i++)
            {
                ((float*)Pointer)[i] = (0.05f + (0.95f * fill.NextSingle())) * (fill.Next(2) == 0 ? 1 : -1);
            }
        }
    }

    public void* Pointer { get; private set; }

    public long Bytes { get; }

    public float* Floats => (float*)Pointer;

    public void Dispose()
    {
        NativeMemory.AlignedFree(Pointer);
        Pointer = null;
    }
}
