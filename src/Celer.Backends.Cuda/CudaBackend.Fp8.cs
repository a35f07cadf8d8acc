using System.Runtime.InteropServices;
using Celer.Backends.Cuda.Interop;
using Celer.Models.Backend;
using Celer.Models.Quantization;
using Celer.Models.Weights;

namespace Celer.Backends.Cuda;

/// <summary>How a GEMM's two operands carry FP8 scales (cuBLASLt's scale modes of A, the weight, and B, the input).</summary>
internal enum Fp8Scaling : byte
{
    /// <summary>A 16- or 32-bit GEMM.</summary>
    None,

    /// <summary>One scale per output row of the weight and one per input row (OUTER_VEC_32F on both).</summary>
    Rows,

    /// <summary>The weight in 128 × 128 blocks (BLK128x128_32F), the input in per-row groups of 128 columns (VEC128_32F).</summary>
    Blocks,
}

/// <summary>
/// FP8 W8A8 linear layers (compressed-tensors float-quantized and fp8 checkpoints) on Hopper. The weights stay E4M3 on
/// the card with fp32 scales beside them (<see cref="Tensor.Scales"/>); each layer's input is quantized to E4M3 by its
/// scheme (<c>fp8_quant.cu</c>), and cuBLASLt's scaled FP8 matmul (cuBLAS 12.9+, sm_90) applies both operands' scales
/// inside its fp32 accumulation and writes the model dtype (fp32 too, which the GPU tests compare with transformers): per output row of the weight times per input row, or
/// DeepSeek's 128 × 128 weight blocks times the input's per-token groups of 128, as vLLM's CUTLASS kernels compute them.
/// A per-tensor weight scale is kept as one scale per row, so q/k/v (or gate/up) with scales of their own stack into one
/// GEMM exactly, where vLLM requantizes them to their largest scale.
/// </summary>
public sealed unsafe partial class CudaBackend
{
    /// <summary>The block edge of cuBLASLt's block scaling modes, and so of the FP8 block checkpoints this backend serves.</summary>
    public const int Fp8ScaleBlock = 128;

    // The scales of a block-scaled weight are a [row blocks, column blocks] grid whose rows cuBLASLt reads 16-byte
    // aligned: each row is padded to a multiple of 4 floats.
    private const int BlockScaleRowAlignment = 4;

    // The same 16-byte alignment for the input's group scales, whose rows are the GEMM's rows.
    private const int BlockScaledRows = 4;

    // The skinny kernel in blocks of 4 or 8 warps × per-row or block scales.
    private readonly nint[] _fp8SkinnyKernels = new nint[2 * 2];
    private readonly int[] _fp8SkinnySharedBytes = new int[2 * 2];  // the dynamic shared memory each was allowed

    // The FP8 layer being run, whose input the tuner quantizes before each timed candidate when it times from inside Choice.
    private (Tensor X, ActivationQuantization Activations)? _fp8Layer;

    // The quantized input of the layer being computed, sized for the largest layer input at the first eager step.
#pragma warning disable CA2213 // Grow puts them in _allocations, which Dispose disposes
    private SafeDeviceMemoryHandle? _fp8Input, _fp8InputScales;
#pragma warning restore CA2213
    private long _fp8InputBytes, _fp8InputScaleBytes;
    private readonly Dictionary<(int Rows, int K), Tensor> _fp8Inputs = [];

    // The input of the FP8 layer that runs next, when the kernel that wrote it also quantized it (AddRmsNorm, the gated
    // activations: CodesAhead): that layer's x, rows, width and scheme, and the launch count just after the kernel. The
    // layer takes those codes only when all match, so no kernel has run since; otherwise it quantizes x itself.
    private (nint X, int Rows, int K, ActivationQuantization Scheme, long Launches)? _fp8Ahead;

    /// <summary>fp8_quant.cu's <c>Fp8Codes</c>, field for field: where a kernel writes an FP8 layer's input.</summary>
    [StructLayout(LayoutKind.Sequential)]
    private struct Fp8Codes
    {
        public ulong Codes, Scales;
        public long ScaleRows;
        public int Mode;
        public float StaticScale, MinScale;
    }

    /// <summary>
    /// One FP8 weight of <paramref name="parts"/> stacked along their rows, each with its scales (<see cref="WeightTensor.Scales"/>),
    /// copied as stored; the scales go to the card as one per row or, for blocks, as the padded grid.
    /// </summary>
    private Tensor LoadFp8(string name, WeightTensor[] parts)
    {
        (int major, int minor) = _device.ComputeCapability;
        if (major != 9)
        {
            throw new ModelLoadException($"'{name}' is an FP8 weight: the CUDA backend's FP8 GEMMs (cuBLASLt's scaled matmul) run on Hopper (sm_90), and {_device.Name} is sm_{major}{minor}. Run the checkpoint with --device cpu.");
        }

        WeightScales first = parts[0].Scales ?? throw new ModelLoadException($"'{parts[0].Name}' is FP8 without scales");
        int columns = parts[0].Shape[1];
        foreach (WeightTensor part in parts)
        {
            if (part.DType != DType.F8E4M3 || part.Scales is not { } s || s.Kind != first.Kind || part.Shape.Length != 2 || part.Shape[1] != columns)
            {
                throw new ModelLoadException($"the parts of '{name}' ({string.Join(", ", parts.Select(p => p.ToString()))}) are not E4M3 matrices of one width and one scale scheme");
            }
        }

        if (columns % 16 != 0)
        {
            throw new ModelLoadException($"'{name}' is an FP8 weight of {columns} columns: the CUDA backend's FP8 GEMMs (and cuBLASLt's) take a multiple of 16.");
        }

        int rows = parts.Sum(p => p.Shape[0]);
        Tensor scales = first.Kind == Fp8WeightScales.PerBlock ? LoadBlockScales(name, parts, columns) : LoadRowScales(name, parts, rows);
        _device.MakeCurrent();
        ulong memory = AllocateWeight((long)rows * columns);
        ulong offset = 0;
        foreach (WeightTensor part in parts)
        {
            Upload(part, memory + offset, DType.F8E4M3);
            offset += (ulong)part.ByteLength;
        }

        return new Tensor(name, (nint)memory, DType.F8E4M3, [rows, columns]) { Scales = scales };
    }

    /// <summary>One scale per output row: a per-channel scale as stored, a per-tensor one repeated.</summary>
    private Tensor LoadRowScales(string name, WeightTensor[] parts, int rows)
    {
        var values = new float[rows];
        int row = 0;
        foreach (WeightTensor part in parts)
        {
            for (int r = 0; r < part.Shape[0]; r++)
            {
                values[row++] = part.Scales!.At(r, 0);
            }
        }

        return UploadScales(name + ".weight_scale", values, [rows]);
    }

    /// <summary>
    /// The parts' block grids one under the other, each grid row padded to <see cref="BlockScaleRowAlignment"/>. Only the
    /// last part may end in a partial block: a block of the stacked matrix cannot straddle two parts' scales (vLLM
    /// refuses such a checkpoint too).
    /// </summary>
    private Tensor LoadBlockScales(string name, WeightTensor[] parts, int columns)
    {
        int gridColumns = (columns + Fp8ScaleBlock - 1) / Fp8ScaleBlock;
        int ld = RoundUp(gridColumns, BlockScaleRowAlignment);
        for (int i = 0; i < parts.Length; i++)
        {
            WeightScales s = parts[i].Scales!;
            if (s.BlockRows != Fp8ScaleBlock || s.BlockColumns != Fp8ScaleBlock)
            {
                throw new ModelLoadException($"'{parts[i].Name}' is scaled in {s.BlockRows}x{s.BlockColumns} blocks; the CUDA backend's FP8 GEMMs take {Fp8ScaleBlock}x{Fp8ScaleBlock}");
            }

            if (i < parts.Length - 1 && parts[i].Shape[0] % Fp8ScaleBlock != 0)
            {
                throw new ModelLoadException($"'{parts[i].Name}' has {parts[i].Shape[0]} rows, not a multiple of its {Fp8ScaleBlock}-row scale blocks, so it cannot share one GEMM with the rest of '{name}'");
            }
        }

        int gridRows = parts.Sum(p => p.Scales!.GridRows);
        var values = new float[gridRows * ld];
        int row = 0;
        foreach (WeightTensor part in parts)
        {
            WeightScales s = part.Scales!;
            for (int r = 0; r < s.GridRows; r++, row++)
            {
                Array.Copy(s.Grid, r * gridColumns, values, row * ld, gridColumns);
            }
        }

        return UploadScales(name + ".weight_scale", values, [gridRows, ld]);
    }

    private Tensor UploadScales(string name, float[] values, int[] shape)
    {
        _device.MakeCurrent();
        ulong memory = AllocateWeight((long)values.Length * sizeof(float));
        fixed (float* p = values)
        {
            Upload(new WeightTensor(name, DType.F32, shape, (nint)p, (long)values.Length * sizeof(float)), memory, DType.F32);
        }

        return new Tensor(name, (nint)memory, DType.F32, shape);
    }

    /// <summary>
    /// y = x·Wᵀ (+ bias) for an E4M3 <paramref name="weight"/>: x quantized by <paramref name="activations"/> into the
    /// FP8 input buffer, then the scaled FP8 GEMM.
    /// </summary>
    private void Fp8Linear(Tensor x, int rows, Tensor weight, Tensor? bias, Tensor y, ActivationQuantization? activations)
    {
        bool blocks = weight.Scales?.Shape.Length == 2;
        if (activations is null || weight.Scales is null || blocks != (activations.Scaling == ActivationScaling.DynamicPerTokenGroup))
        {
            throw new ArgumentException($"'{weight.Name}' is an FP8 weight with {(blocks ? "block" : "per-row")} scales; its input quantization is {activations?.Scaling.ToString() ?? "missing"}.");
        }

        int k = (int)weight.Columns;
        Tensor input = Fp8Input(x.Rows, k);
        bool ahead = _fp8Ahead == (x.Data, rows, k, activations, _kernels.Launches);
        _fp8Ahead = null;
        if (rows == 0)
        {
            return;
        }

        // A block-scaled cuBLASLt GEMM runs rows rounded up to BlockScaledRows (LtRows); the rows past the step's read
        // whatever the input buffer holds there, and their outputs land in y's rows past the step's, which nothing reads.
        _fp8Layer = (x, activations);
        try
        {
            GemmPlan plan = Plan(input, weight, bias, y);
            long launches = _kernels.Launches;
            GemmChoice choice = Choice(plan, input, rows, weight, bias, y);
            // Timing this shape (its first use) quantized x into the same buffer at every row bucket, the last one's group
            // scales laid out for its own rows: the codes written ahead are gone.
            ahead &= _kernels.Launches == launches;
            if (choice.Kernel == GemmKernel.CublasLt && LtRows(plan, rows) > y.Rows)
            {
                throw new ArgumentException($"'{weight.Name}': a block-scaled FP8 GEMM of {rows} rows runs {LtRows(plan, rows)}, beyond the {y.Rows} rows of '{y.Name}'.");
            }

            if (!ahead)
            {
                QuantizeFp8Input(input, rows);
            }

            RunGemm(plan, choice, input, rows, weight, bias, y);
        }
        finally
        {
            _fp8Layer = null;
        }
    }

    /// <summary>The first <paramref name="rows"/> rows of the current FP8 layer's input (<see cref="_fp8Layer"/>) into <paramref name="input"/>'s codes and scales.</summary>
    private void QuantizeFp8Input(Tensor input, int rows)
    {
        (Tensor x, ActivationQuantization activations) = _fp8Layer!.Value;
        if (x.Data % 16 != 0)
        {
            throw new ArgumentException($"The input of an FP8 layer must start 16-byte aligned (quantize_fp8 reads its rows in 16-byte loads); '{x.Name}' does not.");
        }

        ulong xp = (ulong)x.Data;
        int k = (int)input.Columns;
        Fp8Codes codes = CodesFor(input, rows, activations);
        void** args = stackalloc void*[] { &xp, &k, &codes };
        Launch("quantize_fp8", (uint)rows, 1, 256, args);
    }

    /// <summary>
    /// Where a kernel that writes <paramref name="rows"/> rows of <paramref name="x"/> ([rows, <paramref name="k"/>], the
    /// model dtype) can also write their codes for the FP8 layer reading them next, whose input is quantized by
    /// <paramref name="next"/>; null where there is no such layer or x is not as that layer's quantize_fp8 would read it,
    /// and the layer quantizes x itself. After the kernel, <see cref="QuantizedAhead"/> tells the layer.
    /// </summary>
    private Fp8Codes? CodesAhead(Tensor x, int rows, int k, ActivationQuantization? next) =>
        next is null || rows == 0 || k % 16 != 0 || x.Data % 16 != 0 || x.Columns != k ? null : CodesFor(Fp8Input(x.Rows, k), rows, next);

    /// <summary>The kernel launched last wrote the codes <see cref="CodesAhead"/> placed, for the FP8 layer reading x next.</summary>
    private void QuantizedAhead(Tensor x, int rows, int k, ActivationQuantization next) => _fp8Ahead = (x.Data, rows, k, next, _kernels.Launches);

    /// <summary>The codes and scales of <paramref name="input"/> (<see cref="Fp8Input"/>) for <paramref name="rows"/> rows quantized by <paramref name="activations"/>.</summary>
    private static Fp8Codes CodesFor(Tensor input, int rows, ActivationQuantization activations)
    {
        (int mode, float staticScale, float minScale) = Fp8InputScheme(activations);
        return new Fp8Codes
        {
            Codes = (ulong)input.Data, Scales = (ulong)input.Scales!.Data, ScaleRows = InputScaleRows(mode == 2, rows),
            Mode = mode, StaticScale = staticScale, MinScale = minScale,
        };
    }

    /// <summary>fp8_quant.cu's mode (0 dynamic per token, 1 static, 2 dynamic per group of 128) with its two scales.</summary>
    private static (int Mode, float StaticScale, float MinScale) Fp8InputScheme(ActivationQuantization activations) => activations.Scaling switch
    {
        ActivationScaling.DynamicPerToken => (0, 0f, ActivationQuantization.MinTokenScale),
        ActivationScaling.StaticPerTensor => (1, activations.StaticScale, ActivationQuantization.MinTokenScale),
        _ => (2, 0f, ActivationQuantization.MinGroupAbsMax),
    };

    /// <summary>
    /// The rows cuBLASLt runs for <paramref name="rows"/>: <see cref="InputScaleRows"/> (it offers no block-scaled
    /// algorithm for 1 or 2 rows).
    /// </summary>
    private static int LtRows(GemmPlan plan, int rows) => InputScaleRows(plan.Shape.Scaling == Fp8Scaling.Blocks, rows);

    /// <summary>
    /// The leading dimension of an FP8 input's scales per group (<paramref name="groups"/>): <paramref name="rows"/> rounded
    /// up to <see cref="BlockScaledRows"/>, as cuBLASLt reads them 16-byte aligned like the weight's padded grid rows. Every
    /// kernel that writes or reads them uses it, whichever GEMM the tuner picked, so a kernel can quantize a layer's
    /// input before the layer's GEMM is chosen.
    /// </summary>
    private static int InputScaleRows(bool groups, int rows) => groups ? RoundUp(rows, BlockScaledRows) : rows;

    private static int RoundUp(int value, int multiple) => (value + multiple - 1) / multiple * multiple;

    /// <summary>
    /// The FP8 layer of 1 to 8 rows on tensor cores (<c>fp8_skinny_gemm.cu</c>, blocks of <paramref name="warps"/> = 4 or
    /// 8 warps): the rows of <paramref name="input"/> that <see cref="QuantizeFp8Input"/> quantized in, <paramref name="y"/>
    /// (the model dtype) out. Both block sizes are candidates the tuner times.
    /// </summary>
    private void Fp8SkinnyGemm(Tensor input, int rows, Tensor weight, Tensor y, int warps)
    {
        int n = weight.Rows, k = (int)weight.Columns;
        bool blocks = weight.Scales!.Shape.Length == 2;
        int index = (warps == 8 ? 2 : 0) + (blocks ? 1 : 0);
        ref nint function = ref _fp8SkinnyKernels[index];
        if (function == 0)
        {
            function = _kernels.Function($"fp8_skinny_gemm_tc{warps}{(blocks ? "_blocks" : "")}_{_suffix}");
        }

        // Every row's codes, each warp's run of k staged by that warp.
        int sharedBytes = rows * k;
        if (sharedBytes > _fp8SkinnySharedBytes[index])
        {
            _kernels.AllowSharedMemory(function, sharedBytes);
            _fp8SkinnySharedBytes[index] = sharedBytes;
        }

        ulong xq = (ulong)input.Data, xs = (ulong)input.Scales!.Data, wp = (ulong)weight.Data, ws = (ulong)weight.Scales.Data, yp = (ulong)y.Data;
        int ld = blocks ? weight.Scales.Shape[1] : 0, xsLd = InputScaleRows(blocks, rows);
        void** args = stackalloc void*[] { &xq, &xs, &xsLd, &rows, &wp, &ws, &ld, &n, &k, &yp };
        _kernels.Launch(function, "fp8_skinny_gemm", (uint)((n + 15) / 16), 1, 1, (uint)(32 * warps), args, (uint)sharedBytes);
    }

    /// <summary>
    /// The FP8 input buffer seen as a [<paramref name="capacity"/>, <paramref name="k"/>] E4M3 tensor with room for its
    /// scales (one per row and group of 128 at most). It grows at the first eager step that needs more (the startup
    /// warm-up runs the largest), never while a graph records.
    /// </summary>
    private Tensor Fp8Input(int capacity, int k)
    {
        capacity = RoundUp(capacity, BlockScaledRows);
        long bytes = (long)capacity * k, scaleBytes = (long)capacity * ((k + Fp8ScaleBlock - 1) / Fp8ScaleBlock) * sizeof(float);
        if (bytes > _fp8InputBytes)
        {
            _fp8Input = Grow(_fp8Input, bytes, "FP8 GEMM input");
            _fp8InputBytes = bytes;
            _fp8Inputs.Clear();
        }

        if (scaleBytes > _fp8InputScaleBytes)
        {
            _fp8InputScales = Grow(_fp8InputScales, scaleBytes, "FP8 GEMM input scales");
            _fp8InputScaleBytes = scaleBytes;
            _fp8Inputs.Clear();
        }

        if (!_fp8Inputs.TryGetValue((capacity, k), out Tensor? input))
        {
            Tensor scales = new("fp8 input scales", (nint)_fp8InputScales!.Pointer, DType.F32, [(int)(scaleBytes / sizeof(float))]);
            input = new Tensor("fp8 input", (nint)_fp8Input!.Pointer, DType.F8E4M3, [capacity, k]) { Scales = scales };
            _fp8Inputs[(capacity, k)] = input;
        }

        return input;
    }
}
