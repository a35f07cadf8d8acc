using Celer.Models.Backend;
using Celer.Models.Config;
using Celer.Models.Quantization;
using Celer.Models.Weights;

namespace Celer.Models.Architectures;

/// <summary>
/// gpt-oss's experts, brought to the layout of <see cref="IModelBackend.MoeExperts"/> at load. The checkpoint stores them
/// fused and input-major: <c>experts.gate_up_proj</c> [experts, hidden, 2·intermediate] with gate and up columns
/// interleaved (column 2j is gate j, 2j + 1 up j; the model computes x @ W + b), <c>experts.down_proj</c> [experts,
/// intermediate, hidden], and the biases <c>gate_up_proj_bias</c> [experts, 2·intermediate] (interleaved too) and
/// <c>down_proj_bias</c> [experts, hidden]. The published checkpoints store the two weights in MXFP4 instead
/// (<see cref="Mxfp4"/>), output-major: <c>gate_up_proj_blocks</c> [experts, 2·intermediate, hidden / 32, 16] with
/// <c>gate_up_proj_scales</c> [experts, 2·intermediate, hidden / 32] (rows interleaved as the columns above), and
/// <c>down_proj_blocks</c> [experts, hidden, intermediate / 32, 16] with its scales. A backend that decodes MXFP4 itself
/// keeps them packed (<see cref="IModelBackend.LoadMxfp4"/>: the CUDA backend, in bf16, so gpt-oss-120b's 61 GB of
/// experts stay 61 GB rather than 117 GB of bf16); the others get them decoded into bf16 at load. The backends take each expert's gate rows then up rows, output-major ([experts·2·intermediate, hidden]), and down as
/// [experts·hidden, intermediate].
/// </summary>
internal static unsafe class GptOssExperts
{
    /// <summary>The experts under <paramref name="prefix"/> (<c>model.layers.N.mlp.experts.</c>), in MXFP4 when the config says so.</summary>
    public static (Tensor GateUp, Tensor Down, ExpertOptions Options) Load(string prefix, ModelConfig c, IWeightSource w, IModelBackend b)
    {
        MoeConfig moe = c.Moe!;
        int hidden = c.HiddenSize, experts = moe.NumExperts, inter = moe.IntermediateSize;
        WeightTensor gateUpBias = w.Get(prefix + "gate_up_proj_bias", experts, 2 * inter);
        WeightTensor downBias = w.Get(prefix + "down_proj_bias", experts, hidden);

        using var buffers = new NativeBuffers();
        // Gate j of the output-major layout is stored column 2j, up j column 2j + 1.
        int[] deinterleave = [.. Enumerable.Range(0, 2 * inter).Select(r => r < inter ? 2 * r : 2 * (r - inter) + 1)];
        int[] identity = [.. Enumerable.Range(0, hidden)];
        // From the config, not the files: a dummy source (--load-format dummy) has every name.
        bool mxfp4 = c.Quantization is { Method: "mxfp4" };
        Tensor gateUpTensor = mxfp4
            ? LoadMxfp4(prefix + "gate_up_proj", w, b, buffers, experts, 2 * inter, deinterleave, hidden)
            : b.LoadStacked(prefix + "gate_up_proj",
                Gather(w.Get(prefix + "gate_up_proj", experts, hidden, 2 * inter), buffers, experts, deinterleave, hidden, outStride: 1, inStride: 2 * inter));
        Tensor downTensor = mxfp4
            ? LoadMxfp4(prefix + "down_proj", w, b, buffers, experts, hidden, rowOf: null, inter)
            : b.LoadStacked(prefix + "down_proj",
                Gather(w.Get(prefix + "down_proj", experts, inter, hidden), buffers, experts, identity, inter, outStride: 1, inStride: hidden));
        Tensor gateUpBiasTensor = b.LoadStacked(prefix + "gate_up_proj_bias",
            Gather(gateUpBias, buffers, experts, deinterleave, 1, outStride: 1, inStride: 0));
        // [experts, hidden] is already each expert's bias after the one before it.
        Tensor downBiasTensor = b.LoadStacked(prefix + "down_proj_bias", downBias.Reshaped(experts * hidden));
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
            return src.Reshaped(shape);
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

    /// <summary>
    /// The MXFP4 weight <paramref name="name"/> (<c>_blocks</c> and <c>_scales</c>) as [experts·rows, columns], row r of
    /// expert e from its stored row <paramref name="rowOf"/>[r] (null: as stored): kept packed where the backend decodes
    /// MXFP4 itself, else decoded into bf16.
    /// </summary>
    private static Tensor LoadMxfp4(string name, IWeightSource w, IModelBackend b, NativeBuffers buffers, int experts, int rows, int[]? rowOf, int columns)
    {
        if (columns % Mxfp4.BlockSize != 0)
        {
            throw new ModelLoadException($"'{name}_blocks': MXFP4 rows come in blocks of {Mxfp4.BlockSize} values; {columns} is not a multiple");
        }

        int groups = columns / Mxfp4.BlockSize;
        WeightTensor blocks = w.Get(name + "_blocks", experts, rows, groups, Mxfp4.BlockBytes);
        WeightTensor scales = w.Get(name + "_scales", experts, rows, groups);
        foreach (WeightTensor t in (ReadOnlySpan<WeightTensor>)[blocks, scales])
        {
            if (t.DType != DType.U8)
            {
                throw new ModelLoadException($"tensor '{t.Name}' is {t.DType}; MXFP4 blocks and scales are U8");
            }
        }

        if (rowOf is not null)
        {
            blocks = PermuteRows(blocks, buffers, experts, rowOf, groups * Mxfp4.BlockBytes);
            scales = PermuteRows(scales, buffers, experts, rowOf, groups);
        }

        blocks = blocks.Reshaped(experts * rows, columns / 2);
        scales = scales.Reshaped(experts * rows, groups);
        if (b.LoadMxfp4(name, blocks, scales) is { } packed)
        {
            return packed;
        }

        long bytes = (long)experts * rows * columns * sizeof(ushort);
        nint dst = buffers.Allocate(bytes);
        byte* codes = (byte*)blocks.Data, exponents = (byte*)scales.Data;
        Parallel.For(0, experts * rows, r => Mxfp4.DecodeRowToBf16(codes + ((long)r * groups * Mxfp4.BlockBytes), exponents + ((long)r * groups),
            columns, (ushort*)dst + ((long)r * columns)));
        return b.LoadStacked(name, new WeightTensor(name, DType.BF16, [experts * rows, columns], dst, bytes));
    }

    /// <summary>Each expert's rows of <paramref name="rowBytes"/> bytes in the order <paramref name="rowOf"/> gives (row r from stored row rowOf[r]).</summary>
    private static WeightTensor PermuteRows(WeightTensor src, NativeBuffers buffers, int experts, int[] rowOf, int rowBytes)
    {
        nint dst = buffers.Allocate(src.ByteLength);
        byte* from = (byte*)src.Data, to = (byte*)dst;
        int rows = rowOf.Length;
        Parallel.For(0, experts, e =>
        {
            for (int r = 0; r < rows; r++)
            {
                Buffer.MemoryCopy(from + (((long)e * rows) + rowOf[r]) * rowBytes, to + (((long)e * rows) + r) * rowBytes, rowBytes, rowBytes);
            }
        });
        return new WeightTensor(src.Name, src.DType, src.Shape, dst, src.ByteLength);
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
