using System.Runtime.InteropServices;

namespace Celer.Models.Weights;

/// <summary>
/// A view of one stored weight: its dtype, shape and a pointer to its first element. The memory
/// belongs to the <see cref="IWeightSource"/> that returned it (a memory-mapped file or a native
/// buffer) and stays valid until that source is disposed; nothing is copied.
/// </summary>
public readonly unsafe struct WeightTensor
{
    public WeightTensor(string name, DType dtype, int[] shape, nint data, long byteLength)
    {
        Name = name;
        DType = dtype;
        Shape = shape;
        Data = data;
        ByteLength = byteLength;
    }

    public string Name { get; }
    public DType DType { get; }
    public int[] Shape { get; }

    /// <summary>Address of the first element; valid while the source lives.</summary>
    public nint Data { get; }

    public long ByteLength { get; }

    /// <summary>
    /// Set for a dummy weight whose values a device generates itself (<see cref="Data"/> is then 0): the rule that
    /// gives element i, the same one <see cref="DummyWeightSource"/> uses on the host.
    /// </summary>
    public SyntheticValues? Synthetic { get; init; }

    /// <summary>
    /// Set on an FP8 weight that reaches a backend as stored, for GEMMs that multiply in FP8 (the CUDA backend's W8A8
    /// layers): its scales, read from the checkpoint by <see cref="Quantization.Fp8WeightSource"/>.
    /// </summary>
    public Quantization.WeightScales? Scales { get; init; }

    /// <summary>
    /// Set on an integer weight-only layer's weight that reaches a backend with integer kernels (both backends' 4-bit paths):
    /// its codes, zero points and scales unpacked from the checkpoint's layout by <see cref="Quantization.IntWeightSource"/>,
    /// for the backend to repack. <see cref="Shape"/> is then the logical [out, in], <see cref="DType"/> I32 and
    /// <see cref="Data"/> 0: a backend that does not look here refuses it (<see cref="RequireUnquantized"/>).
    /// </summary>
    public Quantization.IntWeights? Packed { get; init; }

    /// <summary>The same bytes (or the same synthetic rule) seen with another shape of as many elements.</summary>
    public WeightTensor Reshaped(params int[] shape)
    {
        var reshaped = new WeightTensor(Name, DType, shape, Data, ByteLength) { Synthetic = Synthetic };
        return reshaped.ElementCount == ElementCount
            ? reshaped
            : throw new ArgumentException($"tensor '{Name}' {FormatShape(Shape)} cannot be seen as {FormatShape(shape)}", nameof(shape));
    }

    public long ElementCount
    {
        get
        {
            long count = 1;
            foreach (int dim in Shape)
            {
                count *= dim;
            }
            return count;
        }
    }

    /// <summary>
    /// The values widened to fp32, exact for the F32, BF16 and F16 tensors that small weights (scales, a classifier's head)
    /// are stored as; any other dtype is refused naming the tensor and <paramref name="role"/>, what it was read as.
    /// </summary>
    public float[] ToFloats(string role)
    {
        if (DType is not (DType.F32 or DType.BF16 or DType.F16))
        {
            throw new ModelLoadException($"'{Name}' is {DType}; {role} are read from F32, BF16 or F16");
        }

        var values = new float[ElementCount];
        HalfConversions.ToFloat(DType, Bytes, values);
        return values;
    }

    /// <summary>The raw little-endian bytes. Spans stop at 2 GiB; use <see cref="Data"/> for larger tensors.</summary>
    public ReadOnlySpan<byte> Bytes => new((void*)Data, SpanLength(ByteLength));

    /// <summary>The elements as <typeparamref name="T"/> (<c>float</c> for F32, <c>Half</c> or <c>ushort</c> for F16, <c>ushort</c> for BF16).</summary>
    public ReadOnlySpan<T> AsSpan<T>() where T : unmanaged
    {
        if (sizeof(T) != DType.ByteSize())
        {
            throw new InvalidOperationException($"tensor '{Name}' is {DType}; {typeof(T).Name} has a different element size");
        }
        return new ReadOnlySpan<T>((void*)Data, SpanLength(ElementCount));
    }

    /// <summary>
    /// Refuses a quantized tensor where a backend loads weights as they are stored: FP8 and integer weights reach a backend
    /// dequantized, or with their <see cref="Scales"/>, through a quantized checkpoint's weight source
    /// (<see cref="Quantization.QuantizedWeights"/>).
    /// </summary>
    public void RequireUnquantized()
    {
        if (DType is DType.F8E4M3 or DType.F8E5M2)
        {
            throw new ModelLoadException($"tensor '{Name}' is stored as {DType}: an FP8 weight needs the checkpoint's quantization_config, which says where its scales are");
        }

        if (DType is DType.I8 or DType.I32 or DType.I64 or DType.U8)
        {
            throw new ModelLoadException($"tensor '{Name}' is stored as {DType}: integer weights need the checkpoint's quantization_config, which says how they are packed and scaled");
        }
    }

    /// <summary>Shape as <c>[a,b]</c>, the form used in load errors.</summary>
    public static string FormatShape(ReadOnlySpan<int> shape) => "[" + string.Join(",", shape.ToArray()) + "]";

    public override string ToString() => $"{Name} {DType}{FormatShape(Shape)}";

    private int SpanLength(long length) => Synthetic is not null
        ? throw new InvalidOperationException($"tensor '{Name}' is generated on the device; it has no host bytes")
        : length <= int.MaxValue
        ? (int)length
        : throw new InvalidOperationException($"tensor '{Name}' is {length} long, beyond what a span can hold; use Data");
}

/// <summary>
/// Dummy weight values as a rule rather than bytes: all ones, or element i = low + (high − low)·u_i, with u_i the top
/// 24 bits of SplitMix64's output for state <see cref="State"/> + (i + 1)·0x9E3779B97F4A7C15, all in fp32 without
/// fused multiply-adds, then rounded to the tensor's dtype (nearest even).
/// </summary>
public sealed record SyntheticValues(ulong State, float Low, float High, bool Ones)
{
    /// <summary>SplitMix64's increment between two elements' generator states (the golden ratio).</summary>
    public const ulong Gamma = 0x9E3779B97F4A7C15;

    /// <summary>The values from element <paramref name="first"/> on: element i of the result is element first + i of these.</summary>
    public SyntheticValues From(long first) => this with { State = unchecked(State + ((ulong)first * Gamma)) };
}
