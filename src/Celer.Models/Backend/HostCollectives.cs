using Celer.Models.Weights;

namespace Celer.Models.Backend;

/// <summary>
/// What the groups of CPU ranks (threads in one process, processes sharing memory, hosts over TCP) do alike with the
/// CPU backend's fp32 activations in host memory.
/// </summary>
public static unsafe class HostCollectives
{
    /// <summary>The tensor's values; <paramref name="group"/> ("the TCP group") names the refusal of another dtype.</summary>
    public static float* Floats(Tensor x, string group, string operation) => x.DType == DType.F32
        ? (float*)x.Data
        : throw new NotSupportedException($"The {group}'s {operation} takes fp32 tensors (the CPU backend's activations), not {x.DType}.");

    /// <summary>Rows 0 .. <paramref name="rows"/> − 1 of one rank's part (<paramref name="columns"/> wide) into that rank's band of
    /// <paramref name="gathered"/>'s columns (<paramref name="width"/> wide): an all-gather's placing of a part.</summary>
    public static void PlaceColumns(float* part, int rows, int columns, float* gathered, int width, int rank)
    {
        for (int row = 0; row < rows; row++)
        {
            new ReadOnlySpan<float>(part + ((long)row * columns), columns).CopyTo(new Span<float>(gathered + ((long)row * width) + ((long)rank * columns), columns));
        }
    }
}
