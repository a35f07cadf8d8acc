using System.Runtime.InteropServices;
using Celer.Backends.Cuda.Interop;
using Celer.Models.Backend;
using Celer.Models.Quantization;
using Celer.Models.Weights;

namespace Celer.Backends.Cuda;

/// <summary>The W4A16 kernels (<c>int4_gemm.cu</c>).</summary>
internal enum Int4Kernel : byte
{
    /// <summary>int4_gemv: the CUDA-core kernel of the linear layout, up to 8 rows.</summary>
    Gemv,

    /// <summary>int4_gemm_tc: 16 output columns per block, x read by every warp, up to 64 rows.</summary>
    TensorCore,

    /// <summary>int4_gemm_tiled: x's tile, the codes and the scales through shared memory, 16 columns per warp of <see cref="Int4Choice.Warps"/>.</summary>
    Tiled,

    /// <summary>The weight dequantized into the model dtype, then cuBLASLt.</summary>
    Dequantized,
}

/// <summary>One way to run a W4A16 layer: a kernel, and for the tiled one its warps per block (4 or 8) and whether k is split across blocks.</summary>
internal readonly record struct Int4Choice(Int4Kernel Kernel, int Warps = 0, bool SplitK = false)
{
    public override string ToString() => Kernel switch
    {
        Int4Kernel.Gemv => "int4 gemv",
        Int4Kernel.TensorCore => "int4 tc",
        Int4Kernel.Tiled => $"int4 tiled {Warps}w{(SplitK ? " split-k" : "")}",
        _ => "dequantize + cuBLASLt",
    };
}

/// <summary>
/// Integer weight-only layers (GPTQ, AWQ, compressed-tensors W4A16 / W8A16). A 4-bit weight whose groups are runs of a
/// multiple of 8 columns stays packed on the card, a quarter of its 16-bit bytes (<c>int4_gemm.cu</c>: codes along the
/// input, a scale and zero point per row and group, act-order columns sorted by group at load and the input gathered
/// alike). In a 16-bit model, with k a multiple of 128 and groups of a power of two from 32 (or per channel),
/// the codes take the tensor-core layout, whose kernels dequantize the weight in registers into mma.sync fragments:
/// <c>int4_gemm_tc</c> (16 columns per block, up to <see cref="Int4TensorCoreRows"/> rows) and <c>int4_gemm_tiled</c>
/// (x's tile shared by a block's 64 or 128 columns, k split across blocks where the columns make too few), or the
/// weight dequantized for cuBLASLt; the first eager step of each shape and row bucket times them and keeps the fastest
/// (<see cref="Int4ChoiceFor"/>). Otherwise steps of up to <see cref="Int4GemvRows"/> rows run the CUDA-core
/// <c>int4_gemv</c>, and larger ones the dequantized weight under cuBLASLt. Other integer weights (8-bit, other group sizes, stacked parts with different act orders) are dequantized into
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
    private readonly nint[] _int4Tiled = new nint[12]; // output in the model dtype or fp32 × 16, 32, 64 rows per tile × 4, 8 warps
    private readonly Dictionary<Int4Shape, Int4Choice> _int4Choices = [];

    // int4_gemm_tiled's split-k partial tiles (one of up to 64 rows × 128 columns (8 warps) in fp32 per block, for up to
    // Int4TiledTargetBlocks blocks) and per-tile counters (zero between launches), allocated with the first
    // tensor-core-layout weight.
    private ulong _int4Partials, _int4Counters;

    /// <summary>What the tuned choice of a W4A16 layer depends on.</summary>
    private readonly record struct Int4Shape(int N, int K, int Groups, DType Output, int Bucket);

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
        if (!IntWeights.Packable(weights, 4, out int[]? order))
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
            ? [.. Enumerable.Range(0, scalesAndZeros.Length / 2).Select(j => ScaleWord(scalesAndZeros[2 * j], scalesAndZeros[(2 * j) + 1]))]
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

        if (tensorCores && _int4Partials == 0)
        {
            _int4Partials = Track(_device.Allocate((long)Int4TiledTargetBlocks * 64 * 128 * sizeof(float))).Pointer;
            _int4Counters = Track(_device.Allocate((long)Int4TiledTargetBlocks * sizeof(int))).Pointer;
            CudaDriver.Check(CudaDriver.cuMemsetD32Async(_int4Counters, 0, (nuint)Int4TiledTargetBlocks, _device.Stream), "cuMemsetD32Async");
        }

        _device.Synchronize();   // the host arrays are released on return
        return new Tensor(name, (nint)memory, DType.I32, [rows, words]) { Int4 = new PackedInt4(columns, groupSize, groups, sz, columnOrder, tensorCores ? Int4Layout.TensorCore : Int4Layout.Linear) };
    }

    /// <summary>The tensor-core layout's code bias: 128 + code is exact in bf16's 8 significant bits, 1024 + code in fp16's 11.</summary>
    private float TensorCoreMagic => ActivationDType == DType.BF16 ? 128f : 1024f;

    /// <summary>A group's 32-bit word in the tensor-core and experts layouts: the scale in the low half, magic + zero in the high half.</summary>
    private uint ScaleWord(float scale, float zero) => Bits16(scale) | (Bits16(TensorCoreMagic + zero) << 16);

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

    /// <summary>
    /// y = x·Wᵀ (+ bias) for a packed 4-bit <paramref name="weight"/>, by the tuner's choice or by
    /// <paramref name="choice"/> (tests run each of <see cref="Int4Choices"/>).
    /// </summary>
    internal void Int4Linear(Tensor x, int rows, Tensor weight, Tensor? bias, Tensor y, Int4Choice? choice = null)
    {
        if (weight.Int4!.Layout == Int4Layout.Experts)
        {
            throw new ArgumentException($"Int4Linear: {weight} holds stacked MoE experts, which MoeExperts reads.");
        }

        Tensor input = Int4LayerInput(x, rows, weight);
        if (rows > 0)
        {
            RunInt4(choice ?? Int4ChoiceFor(input, rows, weight, bias, y), input, rows, weight, bias, y);
        }
    }

    /// <summary>The layer's input, gathered into its packed column order for an act-order weight.</summary>
    private Tensor Int4LayerInput(Tensor x, int rows, Tensor weight)
    {
        PackedInt4 q = weight.Int4!;
        if (q.ColumnOrder is not { } order)
        {
            return x;
        }

        int k = q.Columns;
        Tensor input = Int4Input(x.Rows, k);
        if (rows > 0)
        {
            ulong xp = (ulong)x.Data, op = (ulong)order.Data, ip = (ulong)input.Data;
            void** gather = stackalloc void*[] { &xp, &op, &k, &ip };
            Launch("gather_columns", (uint)((k + 255) / 256), (uint)rows, 256, gather);
        }

        return input;
    }

    private void RunInt4(Int4Choice choice, Tensor input, int rows, Tensor weight, Tensor? bias, Tensor y)
    {
        PackedInt4 q = weight.Int4!;
        int n = weight.Rows, k = q.Columns, groups = q.Groups, groupSize = q.GroupSize;
        int groupShift = groupSize == k ? 31 : System.Numerics.BitOperations.Log2((uint)groupSize);
        ulong wp = (ulong)weight.Data, szp = (ulong)q.ScalesAndZeros.Data, inp = (ulong)input.Data, yp = (ulong)y.Data;
        bool fp32Out = y.DType != ActivationDType;
        int bucket = RowBucket(rows);
        switch (choice.Kernel)
        {
            case Int4Kernel.TensorCore:
            {
                int tcBucket = Math.Max(8, bucket);
                ref nint function = ref _int4Tc[(fp32Out ? 4 : 0) + System.Numerics.BitOperations.Log2((uint)tcBucket) - 3];
                if (function == 0)
                {
                    function = _kernels.Function($"int4_gemm_tc_{_suffix}_{(fp32Out ? "f32" : "same")}_m{tcBucket}");
                }

                void** args = stackalloc void*[] { &inp, &rows, &wp, &szp, &groups, &groupShift, &n, &k, &yp };
                _kernels.Launch(function, "int4_gemm_tc", (uint)((n + 15) / 16), 1, 1, (uint)Int4TensorCoreThreads(tcBucket), args);
                break;
            }

            case Int4Kernel.Tiled:
            {
                int tileRows = Int4TileRows(bucket), rowTiles = (rows + tileRows - 1) / tileRows, columns = 16 * choice.Warps;
                int columnBlocks = (n + columns - 1) / columns;
                int splits = choice.SplitK ? Int4Splits(columnBlocks * rowTiles, k / Int4TensorCoreBlockK) : 1;
                int sharedBytes = Int4TiledSharedBytes(tileRows, columns);
                ref nint function = ref _int4Tiled[(((fp32Out ? 3 : 0) + System.Numerics.BitOperations.Log2((uint)tileRows) - 4) * 2) + (choice.Warps / 4) - 1];
                if (function == 0)
                {
                    function = _kernels.Function($"int4_gemm_tiled_{_suffix}_{(fp32Out ? "f32" : "same")}_m{tileRows}_w{choice.Warps}");
                    _kernels.AllowSharedMemory(function, sharedBytes);
                }

                // The bias joins the epilogue when it is in the model dtype (a quantized layer's bias is).
                bool fuseBias = bias is not null && bias.DType == ActivationDType;
                ulong bp = fuseBias ? (ulong)bias!.Data : 0, pp = _int4Partials, cp = _int4Counters;
                void** args = stackalloc void*[] { &inp, &rows, &rowTiles, &wp, &szp, &groups, &groupShift, &n, &k, &bp, &yp, &pp, &cp };
                _kernels.Launch(function, "int4_gemm_tiled", (uint)(columnBlocks * rowTiles), (uint)splits, 1, (uint)(32 * choice.Warps), args, (uint)sharedBytes);
                if (fuseBias)
                {
                    return;
                }

                break;
            }

            case Int4Kernel.Gemv:
            {
                ref nint function = ref _int4Gemv[(fp32Out ? 4 : 0) + System.Numerics.BitOperations.Log2((uint)bucket)];
                if (function == 0)
                {
                    function = _kernels.Function($"int4_gemv_{_suffix}_{(fp32Out ? "f32" : "same")}_m{bucket}");
                }

                void** args = stackalloc void*[] { &inp, &rows, &wp, &szp, &groups, &groupSize, &n, &k, &yp };
                const int columnsPerBlock = Int4GemvThreads / 32;
                _kernels.Launch(function, "int4_gemv", (uint)((n + columnsPerBlock - 1) / columnsPerBlock), 1, 1, Int4GemvThreads, args);
                break;
            }

            default:
            {
                var dequantized = new Tensor(weight.Name + " dequantized", (nint)_int4Weight!.Pointer, ActivationDType, [n, k]);
                ulong dp = (ulong)dequantized.Data;
                int tc = q.Layout == Int4Layout.TensorCore ? 1 : 0;
                void** dargs = stackalloc void*[] { &wp, &szp, &groups, &groupSize, &tc, &n, &k, &dp };
                Launch("int4_dequantize", Blocks((long)n * k / 8), 1, 256, dargs);
                RunLinear(input, rows, dequantized, bias, y);
                return;
            }
        }

        if (bias is not null)
        {
            AddBias(y, rows, n, bias);
        }
    }

    /// <summary>Rows per tile of int4_gemm_tiled for a row bucket: 16, 32, or 64 with several tiles.</summary>
    private static int Int4TileRows(int bucket) => Math.Clamp(bucket, 16, 64);

    /// <summary>
    /// Splits of k for a tiled launch of <paramref name="blocks"/> column blocks × row tiles: enough to make about
    /// <see cref="Int4TiledTargetBlocks"/> blocks (four per SM), and at least four 128-k blocks each (the pipeline's depth).
    /// </summary>
    private int Int4Splits(int blocks, int kBlocks) => Math.Max(1, Math.Min(Int4TiledTargetBlocks / blocks, kBlocks / 4));

    /// <summary>int4_gemm_tiled's 4 stages of x's tile (256 bytes per row), the codes (64 per column) and the scale words (16 per column).</summary>
    private static int Int4TiledSharedBytes(int tileRows, int columns) => 4 * ((tileRows * 256) + (columns * 64) + (columns * 16));

    private int Int4TiledTargetBlocks => 4 * _device.MultiprocessorCount;

    /// <summary>
    /// The kernel for this layer's shape at the step's row bucket. A tensor-core-layout weight's first eager step times
    /// its candidates at every bucket up to <see cref="TunedRowsLimit"/> that the buffers hold, as the GEMM tuner does,
    /// so the decode graphs recorded after it find their choices (which wins moves with the rows, the shape and the card:
    /// the 16-column kernel at a few rows, the tiled one with or without split k above, cuBLASLt on the dequantized
    /// weight for many rows); a shape first met while a graph records takes <see cref="Int4Default"/> without keeping
    /// it. Other weights: the GEMV up to <see cref="Int4GemvRows"/> rows, else the dequantized weight.
    /// </summary>
    private Int4Choice Int4ChoiceFor(Tensor input, int rows, Tensor weight, Tensor? bias, Tensor y)
    {
        PackedInt4 q = weight.Int4!;
        int bucket = RowBucket(rows);
        if (q.Layout != Int4Layout.TensorCore)
        {
            return new Int4Choice(bucket <= Int4GemvRows ? Int4Kernel.Gemv : Int4Kernel.Dequantized);
        }

        var key = new Int4Shape(weight.Rows, q.Columns, q.Groups, y.DType, bucket);
        if (_int4Choices.TryGetValue(key, out Int4Choice choice))
        {
            return choice;
        }

        if (bucket > TunedRowsLimit || GemmPolicy != GemmPolicy.Tune)
        {
            return _int4Choices[key] = Int4Default(bucket);
        }

        if (_capturing)
        {
            return Int4Default(bucket);
        }

        // x and y are scratch here: the caller's GEMM runs after. A bucket past the buffers is timed at the rows they
        // hold (the step's own bucket), or, beyond that, left to its first eager step.
        int capacity = Math.Min(input.Rows, y.Rows);
        using SafeCudaEventHandle start = NewEvent(), end = NewEvent();
        for (int b = 1; b <= TunedRowsLimit && (b <= capacity || b == bucket); b *= 2)
        {
            if (!_int4Choices.ContainsKey(key with { Bucket = b }))
            {
                int timedRows = Math.Min(b, capacity);
                _int4Choices[key with { Bucket = b }] = Int4Candidates(b).MinBy(c => TimeInt4(c, input, timedRows, weight, bias, y, TuneRepeats, start, end));
            }
        }

        return _int4Choices[key];
    }

    /// <summary>Untimed: the 16-column kernel up to 8 rows, the tiled one with split k up to 256, cuBLASLt above.</summary>
    private static Int4Choice Int4Default(int bucket) => bucket switch
    {
        <= 8 => new Int4Choice(Int4Kernel.TensorCore),
        <= 256 => new Int4Choice(Int4Kernel.Tiled, Warps: 4, SplitK: true),
        _ => new Int4Choice(Int4Kernel.Dequantized),
    };

    /// <summary>What the tuner times for a tensor-core-layout weight at a row bucket.</summary>
    private static List<Int4Choice> Int4Candidates(int bucket)
    {
        var candidates = new List<Int4Choice>(6);
        if (bucket <= Int4TensorCoreRows)
        {
            candidates.Add(new Int4Choice(Int4Kernel.TensorCore));
        }

        foreach (int warps in (int[])[4, 8])
        {
            candidates.Add(new Int4Choice(Int4Kernel.Tiled, warps, SplitK: false));
            candidates.Add(new Int4Choice(Int4Kernel.Tiled, warps, SplitK: true));
        }

        candidates.Add(new Int4Choice(Int4Kernel.Dequantized));
        return candidates;
    }

    /// <summary>Milliseconds per layer over <paramref name="repeats"/> back-to-back launches, after one untimed.</summary>
    private float TimeInt4(Int4Choice choice, Tensor input, int rows, Tensor weight, Tensor? bias, Tensor y, int repeats,
        SafeCudaEventHandle start, SafeCudaEventHandle end) =>
        TimeRepeated(() => RunInt4(choice, input, rows, weight, bias, y), repeats, start, end);

    /// <summary>
    /// Every kernel the tuner times for a packed 4-bit <paramref name="weight"/> at <paramref name="rows"/> rows, each
    /// over <paramref name="repeats"/> back-to-back launches (<c>celer bench gemm --int4</c>), labelled as
    /// <see cref="Int4Choice.ToString"/>.
    /// </summary>
    public IReadOnlyList<(string Kernel, double Seconds)> TimeInt4Kernels(Tensor x, int rows, Tensor weight, Tensor? bias, Tensor y, int repeats)
    {
        Tensor input = Int4LayerInput(x, rows, weight);
        using SafeCudaEventHandle start = NewEvent(), end = NewEvent();
        return [.. Int4Choices(rows, weight).Select(c => (c.ToString(), TimeInt4(c, input, rows, weight, bias, y, repeats, start, end) / 1e3))];
    }

    /// <summary>Every kernel that can run this weight at <paramref name="rows"/> rows (tests run each).</summary>
    internal static IReadOnlyList<Int4Choice> Int4Choices(int rows, Tensor weight)
    {
        int bucket = RowBucket(rows);
        if (weight.Int4!.Layout == Int4Layout.TensorCore)
        {
            return Int4Candidates(bucket);
        }

        return bucket <= Int4GemvRows ? [new Int4Choice(Int4Kernel.Gemv), new Int4Choice(Int4Kernel.Dequantized)] : [new Int4Choice(Int4Kernel.Dequantized)];
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
