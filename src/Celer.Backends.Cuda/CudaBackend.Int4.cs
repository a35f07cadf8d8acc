using System.Runtime.InteropServices;
using Celer.Backends.Cuda.Interop;
using Celer.Models.Backend;
using Celer.Models.Quantization;
using Celer.Models.Weights;

namespace Celer.Backends.Cuda;

/// <summary>
/// Integer weight-only layers (GPTQ, AWQ, compressed-tensors W4A16 / W8A16). A 4-bit weight whose groups are runs of a
/// multiple of 8 columns stays packed on the card, a quarter of its 16-bit bytes (<c>int4_gemm.cu</c>: codes along the
/// input, a scale and zero point per row and group, act-order columns sorted by group at load and the input gathered
/// alike). In a 16-bit model, with k a multiple of 128 and groups of a power of two from 32 (or per channel),
/// the codes take the tensor-core layout and steps of up to <see cref="Int4TensorCoreRows"/> rows run <c>int4_gemm_tc</c>
/// (the weight dequantized in registers into mma.sync fragments); otherwise steps of up to <see cref="Int4GemvRows"/>
/// rows run the CUDA-core <c>int4_gemv</c>. Larger steps dequantize the weight into the model dtype and run cuBLASLt's
/// GEMM. Other integer weights (8-bit, other group sizes, stacked parts with different act orders) are dequantized into
/// the model dtype at load.
/// </summary>
public sealed unsafe partial class CudaBackend
{
    /// <summary>Rows up to which a step runs the CUDA-core W4A16 GEMV; above, the weight is dequantized for cuBLASLt.</summary>
    internal const int Int4GemvRows = 8;

    /// <summary>Rows up to which a step on a tensor-core-layout weight runs <c>int4_gemm_tc</c>.</summary>
    internal const int Int4TensorCoreRows = 64;

    private const int Int4GemvThreads = 256;   // 8 warps = 8 output columns per block
    // int4_gemm_tc's blocks: 16 output columns, 8 warps over k for up to 8 rows, 4 above.
    private static int Int4TensorCoreThreads(int bucket) => bucket == 8 ? 256 : 128;
    private const int Int4TensorCoreBlockK = 128;

    private readonly nint[] _int4Gemv = new nint[8];   // output in the model dtype or fp32 × 1, 2, 4, 8 rows
    private readonly nint[] _int4Tc = new nint[8];     // output in the model dtype or fp32 × 8, 16, 32, 64 rows

    // The dequantized weight of the layer being computed (sized at load for the largest packed weight) and the
    // act-order input gathered into its column order (sized at the first eager step that needs more).
#pragma warning disable CA2213 // Grow puts them in _allocations, which Dispose disposes
    private SafeDeviceMemoryHandle? _int4Weight, _int4Input;
#pragma warning restore CA2213
    private long _int4WeightBytes, _int4InputBytes;

    /// <summary>
    /// <paramref name="parts"/> (unpacked by <see cref="IntWeightSource"/>) stacked along their rows: packed when every
    /// part is 4-bit with groups of whole words and one column order, else dequantized into the model dtype.
    /// </summary>
    private Tensor LoadInt(string name, WeightTensor[] parts)
    {
        IntWeights[] weights = IntWeights.Stacked(name, parts);
        if (!IntWeights.PackableInt4(weights, out int[]? order))
        {
            return LoadDequantized(name, parts);
        }

        int columns = weights[0].Columns, rows = weights.Sum(w => w.Rows), words = columns / 8, groups = weights[0].Groups;
        // GPTQ's per-channel group (-1) is one group as wide as the input.
        int groupSize = weights[0].GroupSize == 0 ? columns : weights[0].GroupSize;
        bool tensorCores = ActivationDType != DType.F32 && _device.ComputeCapability.Major >= 8 && columns % Int4TensorCoreBlockK == 0
            && (weights[0].GroupSize == 0 || (groupSize >= 32 && System.Numerics.BitOperations.IsPow2(groupSize)));
        uint[] codes = IntWeights.PackCodes(weights, order, tensorCores ? TensorCoreColumn : (q, i) => (q * 8) + i);
        // The linear layout's (scale, zero) float pairs, or the tensor-core layout's 16-bit (scale, magic + zero) words.
        float[] scalesAndZeros = IntWeights.ScalesAndZeros(weights);
        uint[] packedScales = tensorCores
            ? [.. Enumerable.Range(0, scalesAndZeros.Length / 2).Select(j => Bits16(scalesAndZeros[2 * j]) | (Bits16(TensorCoreMagic + scalesAndZeros[(2 * j) + 1]) << 16))]
            : [];

        _device.MakeCurrent();
        ulong memory = AllocateWeight((long)codes.Length * sizeof(uint));
        fixed (uint* p = codes)
        {
            Upload(new WeightTensor(name, DType.I32, [rows, words], (nint)p, (long)codes.Length * sizeof(uint)), memory, DType.I32);
        }

        Tensor? columnOrder = null;
        if (order is not null)
        {
            ulong orderMemory = AllocateWeight((long)columns * sizeof(int));
            fixed (int* p = order)
            {
                Upload(new WeightTensor(name + ".column_order", DType.I32, [columns], (nint)p, (long)columns * sizeof(int)), orderMemory, DType.I32);
            }

            columnOrder = new Tensor(name + ".column_order", (nint)orderMemory, DType.I32, [columns]);
        }

        // Steps above the GEMV's rows dequantize into one buffer sized for the largest packed weight.
        long dequantizedBytes = (long)rows * columns * ActivationDType.ByteSize();
        if (dequantizedBytes > _int4WeightBytes)
        {
            _int4Weight = Grow(_int4Weight, dequantizedBytes, "dequantized 4-bit weight");
            _int4WeightBytes = dequantizedBytes;
        }

        Tensor sz;
        if (tensorCores)
        {
            ulong scaleMemory = AllocateWeight((long)packedScales.Length * sizeof(uint));
            fixed (uint* p = packedScales)
            {
                Upload(new WeightTensor(name + ".scales_and_zeros", DType.I32, [rows, groups], (nint)p, (long)packedScales.Length * sizeof(uint)), scaleMemory, DType.I32);
            }

            sz = new Tensor(name + ".scales_and_zeros", (nint)scaleMemory, DType.I32, [rows, groups]);
        }
        else
        {
            sz = UploadScales(name + ".scales_and_zeros", scalesAndZeros, [rows, groups * 2]);
        }

        _device.Synchronize();   // the host arrays are released on return
        return new Tensor(name, (nint)memory, DType.I32, [rows, words]) { Int4 = new PackedInt4(columns, groupSize, groups, sz, columnOrder, tensorCores) };
    }

    /// <summary>The tensor-core layout's code bias: 128 + code is exact in bf16's 8 significant bits, 1024 + code in fp16's 11.</summary>
    private float TensorCoreMagic => ActivationDType == DType.BF16 ? 128f : 1024f;

    /// <summary>The bits of a value rounded to the 16-bit model dtype.</summary>
    private uint Bits16(float value) =>
        ActivationDType == DType.BF16 ? HalfConversions.FloatToBf16(value) : BitConverter.HalfToUInt16Bits((Half)value);

    /// <summary>
    /// The column whose code nibble <paramref name="nibble"/> of word <paramref name="word"/> holds in the tensor-core
    /// layout: word 4t + u of each 128-column block covers columns 32u + 8t … + 7, nibble j the (j % 4) · 2 + j / 4-th
    /// of them (int4_gemm.cu).
    /// </summary>
    private static int TensorCoreColumn(int word, int nibble)
    {
        int block = word / 16, position = word % 16;
        return (block * Int4TensorCoreBlockK) + (position % 4 * 32) + (position / 4 * 8) + (nibble % 4 * 2) + (nibble / 4);
    }

    /// <summary>The parts dequantized on the host (exact in fp32) and converted into the model dtype as they upload.</summary>
    private Tensor LoadDequantized(string name, WeightTensor[] parts)
    {
        int rows = parts.Sum(p => p.Packed!.Rows), columns = parts[0].Packed!.Columns;
        _device.MakeCurrent();
        ulong memory = AllocateWeight((long)rows * columns * ActivationDType.ByteSize());
        ulong offset = 0;
        foreach (WeightTensor part in parts)
        {
            IntWeights w = part.Packed!;
            long bytes = (long)w.Rows * w.Columns * sizeof(float);
            float* values = (float*)NativeMemory.Alloc((nuint)bytes);
            try
            {
                w.Dequantize(values);
                Upload(new WeightTensor(part.Name, QuantizedWeights.DequantizedDType, [w.Rows, w.Columns], (nint)values, bytes), memory + offset);
                _device.Synchronize();   // the staging copies have read the values before they are freed
            }
            finally
            {
                NativeMemory.Free(values);
            }

            offset += (ulong)((long)w.Rows * w.Columns * ActivationDType.ByteSize());
        }

        return new Tensor(name, (nint)memory, ActivationDType, [rows, columns]);
    }

    /// <summary>y = x·Wᵀ (+ bias) for a packed 4-bit <paramref name="weight"/>.</summary>
    private void Int4Linear(Tensor x, int rows, Tensor weight, Tensor? bias, Tensor y)
    {
        PackedInt4 q = weight.Int4!;
        int n = weight.Rows, k = q.Columns, groups = q.Groups, groupSize = q.GroupSize;
        Tensor input = x;
        if (q.ColumnOrder is { } order)
        {
            input = Int4Input(x.Rows, k);
            if (rows > 0)
            {
                ulong xp = (ulong)x.Data, op = (ulong)order.Data, ip = (ulong)input.Data;
                void** gather = stackalloc void*[] { &xp, &op, &k, &ip };
                Launch("gather_columns", (uint)((k + 255) / 256), (uint)rows, 256, gather);
            }
        }

        if (rows == 0)
        {
            return;
        }

        ulong wp = (ulong)weight.Data, szp = (ulong)q.ScalesAndZeros.Data, inp = (ulong)input.Data, yp = (ulong)y.Data;
        bool fp32Out = y.DType != ActivationDType;
        if (q.TensorCoreLayout && rows <= Int4TensorCoreRows)
        {
            int bucket = Math.Max(8, RowBucket(rows));
            ref nint function = ref _int4Tc[(fp32Out ? 4 : 0) + System.Numerics.BitOperations.Log2((uint)bucket) - 3];
            if (function == 0)
            {
                function = _kernels.Function($"int4_gemm_tc_{_suffix}_{(fp32Out ? "f32" : "same")}_m{bucket}");
            }

            int groupShift = groupSize == k ? 31 : System.Numerics.BitOperations.Log2((uint)groupSize);
            void** args = stackalloc void*[] { &inp, &rows, &wp, &szp, &groups, &groupShift, &n, &k, &yp };
            _kernels.Launch(function, "int4_gemm_tc", (uint)((n + 15) / 16), 1, 1, (uint)Int4TensorCoreThreads(bucket), args);
        }
        else if (!q.TensorCoreLayout && rows <= Int4GemvRows)
        {
            int bucket = RowBucket(rows);
            ref nint function = ref _int4Gemv[(fp32Out ? 4 : 0) + System.Numerics.BitOperations.Log2((uint)bucket)];
            if (function == 0)
            {
                function = _kernels.Function($"int4_gemv_{_suffix}_{(fp32Out ? "f32" : "same")}_m{bucket}");
            }

            void** args = stackalloc void*[] { &inp, &rows, &wp, &szp, &groups, &groupSize, &n, &k, &yp };
            const int columnsPerBlock = Int4GemvThreads / 32;
            _kernels.Launch(function, "int4_gemv", (uint)((n + columnsPerBlock - 1) / columnsPerBlock), 1, 1, Int4GemvThreads, args);
        }
        else
        {
            var dequantized = new Tensor(weight.Name + " dequantized", (nint)_int4Weight!.Pointer, ActivationDType, [n, k]);
            ulong dp = (ulong)dequantized.Data;
            int tc = q.TensorCoreLayout ? 1 : 0;
            void** dargs = stackalloc void*[] { &wp, &szp, &groups, &groupSize, &tc, &n, &k, &dp };
            Launch("int4_dequantize", Blocks((long)n * k / 8), 1, 256, dargs);
            RunLinear(input, rows, dequantized, bias, y);
            return;
        }

        if (bias is not null)
        {
            AddBias(y, rows, n, bias);
        }
    }

    /// <summary>
    /// The gathered act-order input seen as [<paramref name="capacity"/>, <paramref name="k"/>]; grows at the first eager
    /// step that needs more (the startup warm-up runs the largest), never while a graph records.
    /// </summary>
    private Tensor Int4Input(int capacity, int k)
    {
        long bytes = (long)capacity * k * ActivationDType.ByteSize();
        if (bytes > _int4InputBytes)
        {
            _int4Input = Grow(_int4Input, bytes, "act-order input");
            _int4InputBytes = bytes;
        }

        return new Tensor("act-order input", (nint)_int4Input!.Pointer, ActivationDType, [capacity, k]);
    }
}
