using Celer.Models.Weights;

namespace Celer.Models.Backend;

/// <summary>
/// A contiguous buffer owned by a backend: weights, activations and the KV cache in the dtypes the backend keeps them in.
/// <see cref="Data"/> is a host pointer on the CPU backend and a device pointer on the CUDA backend; only the
/// backend that made the tensor dereferences it. Rows are the leading dimension; <see cref="Columns"/> is the
/// product of the rest.
/// </summary>
public sealed class Tensor
{
    public Tensor(string name, nint data, DType dtype, int[] shape)
    {
        Name = name;
        Data = data;
        DType = dtype;
        Shape = shape;
        long count = 1;
        foreach (int d in shape)
        {
            count *= d;
        }

        ElementCount = count;
    }

    public string Name { get; }

    public nint Data { get; }

    public DType DType { get; }

    public int[] Shape { get; }

    public long ElementCount { get; }

    /// <summary>
    /// The fp32 scales of an FP8 tensor (an E4M3 weight or quantized input on a backend with FP8 GEMMs), in the layout
    /// that backend's GEMM reads; null for every other tensor.
    /// </summary>
    public Tensor? Scales { get; init; }

    /// <summary>
    /// Set on a 4-bit weight kept packed on a backend with W4A16 kernels (then <see cref="Shape"/> is [out, in / 8]
    /// words); null for every other tensor.
    /// </summary>
    public PackedInt4? Int4 { get; init; }

    /// <summary>
    /// Set on an 8-bit integer weight kept as its codes on a backend with W8A16 kernels (the CPU; then <see cref="Shape"/>
    /// is [out, in] bytes); null for every other tensor.
    /// </summary>
    public PackedInt8? Int8 { get; init; }

    /// <summary>
    /// Set on MXFP4 expert weights kept packed on a backend that decodes them itself (<see cref="IModelBackend.LoadMxfp4"/>):
    /// <see cref="Shape"/> is then [rows, columns / 2] bytes of codes; null for every other tensor.
    /// </summary>
    public PackedMxfp4? Mxfp4 { get; init; }

    public int Rows => Shape.Length == 0 ? 1 : Shape[0];

    public long Columns => Shape.Length <= 1 ? 1 : ElementCount / Shape[0];

    public long ByteLength => ElementCount * DType.ByteSize();

    public override string ToString() => $"{Name} {DType} [{string.Join(", ", Shape)}]";
}

/// <summary>
/// The side data of a packed 4-bit weight: its logical input width, the scales and zero points per (output row, group of
/// <see cref="GroupSize"/> columns), for act-order checkpoints the order its columns were sorted into (the layer's input
/// is gathered into the same order), and which of the backend's code layouts it is in (<see cref="Int4Layout"/>).
/// </summary>
public sealed record PackedInt4(int Columns, int GroupSize, int Groups, Tensor ScalesAndZeros, Tensor? ColumnOrder, Int4Layout Layout);

/// <summary>
/// The side data of an 8-bit weight kept as its codes: the scales and zero points per (output row, group of
/// <see cref="GroupSize"/> columns), as fp32 pairs, and for act-order checkpoints the order its columns were sorted into.
/// </summary>
public sealed record PackedInt8(int GroupSize, int Groups, Tensor ScalesAndZeros, Tensor? ColumnOrder);

/// <summary>How a backend packs a 4-bit weight's codes, scales and zero points (the CUDA backend's <c>int4_gemm.cu</c> and <c>moe.cu</c>).</summary>
public enum Int4Layout
{
    /// <summary>Codes along the input, scales and zero points as fp32 pairs: the CUDA-core and CPU kernels.</summary>
    Linear,

    /// <summary>Codes in the mma.sync fragment order of 128-k blocks, a 16-bit (scale, magic + zero) word per row and group.</summary>
    TensorCore,

    /// <summary>Stacked MoE experts: codes along the input in the tensor-core nibble order, words as <see cref="TensorCore"/>'s.</summary>
    Experts,
}

/// <summary>
/// The side data of an MXFP4 weight kept packed: its logical input width and its E8M0 scale bytes, [rows, columns / 32]
/// (<see cref="Quantization.Mxfp4"/>).
/// </summary>
public sealed record PackedMxfp4(int Columns, Tensor Scales);
