using Celer.Models.Backend;
using Celer.Models.Config;
using Celer.Models.Weights;

namespace Celer.Models.Architectures;

/// <summary>
/// gpt-oss's experts, brought to the layout of <see cref="IModelBackend.MoeExperts"/> at load. The checkpoint stores them
/// fused and input-major: <c>experts.gate_up_proj</c> [experts, hidden, 2·intermediate] with gate and up columns
/// interleaved (column 2j is gate j, 2j + 1 up j; the model computes x @ W + b), <c>experts.down_proj</c> [experts,
/// intermediate, hidden], and the biases <c>gate_up_proj_bias</c> [experts, 2·intermediate] (interleaved too) and
/// <c>down_proj_bias</c> [experts, hidden]. The backends take each expert's gate rows then up rows, output-major
/// ([experts·2·intermediate, hidden]), and down as [experts·hidden, intermediate].
/// </summary>
internal static unsafe class GptOssExperts
{
    public static (Tensor GateUp, Tensor Down, ExpertOptions Options) Load(string prefix, int hidden, MoeConfig moe, IWeightSource w, IModelBackend b)
    {
        int experts = moe.NumExperts, inter = moe.IntermediateSize;
        WeightTensor gateUp = w.Get(prefix + "gate_up_proj", experts, hidden, 2 * inter);
        WeightTensor down = w.Get(prefix + "down_proj", experts, inter, hidden);
        WeightTensor gateUpBias = w.Get(prefix + "gate_up_proj_bias", experts, 2 * inter);
        WeightTensor downBias = w.Get(prefix + "down_proj_bias", experts, hidden);

        using var buffers = new NativeBuffers();
        // Gate j of the output-major layout is stored column 2j, up j column 2j + 1.
        int[] deinterleave = [.. Enumerable.Range(0, 2 * inter).Select(r => r < inter ? 2 * r : 2 * (r - inter) + 1)];
        int[] identity = [.. Enumerable.Range(0, hidden)];
        Tensor gateUpTensor = b.LoadStacked(prefix + "gate_up_proj",
            Gather(gateUp, buffers, experts, deinterleave, hidden, outStride: 1, inStride: 2 * inter));
        Tensor downTensor = b.LoadStacked(prefix + "down_proj",
            Gather(down, buffers, experts, identity, inter, outStride: 1, inStride: hidden));
        Tensor gateUpBiasTensor = b.LoadStacked(prefix + "gate_up_proj_bias",
            Gather(gateUpBias, buffers, experts, deinterleave, 1, outStride: 1, inStride: 0));
        Tensor downBiasTensor = b.LoadStacked(prefix + "down_proj_bias",
            Gather(downBias, buffers, experts, identity, 1, outStride: 1, inStride: 0));
        return (gateUpTensor, downTensor, new ExpertOptions(gateUpBiasTensor, downBiasTensor, moe.SwigluLimit!.Value));
    }

    /// <summary>
    /// dst[e, r, i] = src[e, (rowOf[r]·outStride + i·inStride)] over each expert's stored elements, as
    /// [experts·rows, columns] (a vector [experts·rows] when <paramref name="columns"/> is 1), in the stored dtype. Dummy
    /// weights, which a device generates from a rule, are only reshaped: their values mean nothing in either layout.
    /// </summary>
    private static WeightTensor Gather(WeightTensor src, NativeBuffers buffers, int experts, int[] rowOf, int columns, long outStride, long inStride)
    {
        int rows = rowOf.Length;
        int[] shape = columns == 1 ? [experts * rows] : [experts * rows, columns];
        if (src.Synthetic is not null)
        {
            return new WeightTensor(src.Name, src.DType, shape, src.Data, src.ByteLength) { Synthetic = src.Synthetic };
        }

        int size = src.DType.ByteSize();
        long perExpert = (long)rows * columns;
        nint dst = buffers.Allocate(src.ByteLength);
        byte* from = (byte*)src.Data, to = (byte*)dst;
        Parallel.For(0, experts, e =>
        {
            switch (size)
            {
                case 2:
                    Copy((ushort*)from + (e * perExpert), (ushort*)to + (e * perExpert), rowOf, columns, outStride, inStride);
                    break;
                case 4:
                    Copy((uint*)from + (e * perExpert), (uint*)to + (e * perExpert), rowOf, columns, outStride, inStride);
                    break;
                default:
                    throw new ModelLoadException($"tensor '{src.Name}' is {src.DType}; gpt-oss experts are read in 16- or 32-bit floats");
            }
        });
        return new WeightTensor(src.Name, src.DType, shape, dst, src.ByteLength);
    }

    /// <summary>One expert's strided gather, 64 columns at a time so that the source rows a tile reads stay in cache.</summary>
    private static void Copy<T>(T* src, T* dst, int[] rowOf, int columns, long outStride, long inStride) where T : unmanaged
    {
        const int Tile = 64;
        for (int i0 = 0; i0 < columns; i0 += Tile)
        {
            int i1 = Math.Min(columns, i0 + Tile);
            for (int r = 0; r < rowOf.Length; r++)
            {
                T* row = dst + ((long)r * columns);
                long at = rowOf[r] * outStride;
                for (int i = i0; i < i1; i++)
                {
                    row[i] = src[at + (i * inStride)];
                }
            }
        }
    }
}
