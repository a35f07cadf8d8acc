using Celer.Backends.Cuda.Interop;
using Celer.Models.Backend;
using Celer.Models.Quantization;
using Celer.Models.Weights;

namespace Celer.Backends.Cuda;

/// <summary>The element-wise operators; every kernel is picked by the model dtype (suffix _bf16, _f16, _f32). The GEMMs are in CudaBackend.Gemm.cs.</summary>
public sealed unsafe partial class CudaBackend
{
    private readonly List<RopeTableSlot> _ropeTables = [];   // one per RopeSpec.Slot
    private readonly Dictionary<string, nint> _typedKernels = new(StringComparer.Ordinal), _kvTypedKernels = new(StringComparer.Ordinal);
    private readonly Dictionary<string, nint> _fp32Kernels = new(StringComparer.Ordinal);   // fp32 instances in a 16-bit model

    public void Embedding(Tensor table, Tensor output)
    {
        ulong ids = _tokenIds.Pointer, tab = (ulong)table.Data, o = (ulong)output.Data;
        int hidden = (int)table.Columns;
        void** args = stackalloc void*[] { &ids, &tab, &hidden, &o };
        Launch("embedding", (uint)Batch.NumTokens, 1, Threads(hidden), args);
    }

    public void RmsNorm(Tensor x, int rows, Tensor weight, float eps, Tensor y) => LaunchRmsNorm("rms_norm", x, rows, weight, eps, y);

    /// <summary>
    /// A row-wise norm kernel (<c>rms_norm</c>, Gemma's <c>gemma_rms_norm</c>) over x seen as rows of the weight's size,
    /// so it also normalizes per head.
    /// </summary>
    private void LaunchRmsNorm(string kernel, Tensor x, int rows, Tensor weight, float eps, Tensor y)
    {
        int size = (int)weight.ElementCount;
        long normRows = rows * (x.Columns / size);
        ulong xp = (ulong)x.Data, wp = (ulong)weight.Data, yp = (ulong)y.Data;
        void** args = stackalloc void*[] { &xp, &wp, &size, &eps, &yp };
        Launch(kernel, (uint)normRows, 1, Threads(Vectors(size)), args);
    }

    public void AddRmsNorm(Tensor x, Tensor residual, int rows, Tensor weight, float eps, ActivationQuantization? quantizeFor = null)
    {
        int size = (int)weight.ElementCount;
        ulong xp = (ulong)x.Data, rp = (ulong)residual.Data, wp = (ulong)weight.Data;
        uint threads = Threads(Vectors(size)), heldThreads = Math.Min(threads, HeldRowThreads);
        if (HoldsRow(size, heldThreads) && CodesAhead(x, rows, size, quantizeFor) is { } codes)
        {
            void** fused = stackalloc void*[] { &xp, &rp, &wp, &size, &eps, &codes };
            Launch("add_rms_norm_fp8", (uint)rows, 1, heldThreads, fused);
            QuantizedAhead(x, rows, size, quantizeFor!);
            return;
        }

        void** args = stackalloc void*[] { &xp, &rp, &wp, &size, &eps };
        Launch("add_rms_norm", (uint)rows, 1, threads, args);
    }

    // The 16-byte vectors per thread that add_rms_norm's one-pass path and the gated activations with FP8 codes hold in
    // registers (rmsnorm.cu's RMS_VECS_PER_THREAD, fp8_quant.cu's FP8_GATED_VECS), and the most threads a block of the
    // kernels that also write FP8 codes may have (FP8_HELD_THREADS: their registers do not fit 1024 threads).
    private const int HeldVectors = 4;
    private const uint HeldRowThreads = 512;

    /// <summary>Whether a block of <paramref name="threads"/> holds a row of <paramref name="elements"/> in registers, whole vectors of them.</summary>
    private bool HoldsRow(int elements, uint threads) =>
        elements % (16 / ActivationDType.ByteSize()) == 0 && Vectors(elements) <= HeldVectors * threads;

    public void RmsNormSlice(Tensor x, int rows, int offset, Tensor weight, float eps)
    {
        int size = (int)weight.ElementCount, stride = (int)x.Columns;
        ulong xp = (ulong)x.Data, wp = (ulong)weight.Data;
        void** args = stackalloc void*[] { &xp, &stride, &offset, &wp, &size, &eps };
        Launch("rms_norm_slice", (uint)rows, 1, Threads(size), args);
    }

    public void Add(Tensor x, int rows, Tensor residual)
    {
        ulong xp = (ulong)x.Data, rp = (ulong)residual.Data;
        long n = rows * x.Columns;
        void** args = stackalloc void*[] { &xp, &n, &rp };
        Launch("add_into", Blocks(n), 1, 256, args);
    }

    // rope.cu's PREPARE_WARPS; and a grid of at most 16384 blocks: 16 items per warp for a 32k-token Qwen3-0.6B step.
    private const int PrepareWarps = 4, MaxPrepareBlocks = 16384;

    public void PrepareAttention(int layer, Tensor qkv, int rows, AttentionSpec spec, RopeSpec rope, Tensor? qNorm, Tensor? kNorm, float eps, Tensor q)
    {
        ulong src = (ulong)qkv.Data, pp = _positions.Pointer, sp = _slotMapping.Pointer, table = RopeTable(rope);
        ulong qn = (ulong)(qNorm?.Data ?? 0), kn = (ulong)(kNorm?.Data ?? 0), qo = (ulong)q.Data, kc = _kCache[layer], vc = _vCache[layer];
        int heads = spec.NumHeads, kvHeads = spec.NumKvHeads, hd = spec.HeadDim, rotary = rope.RotaryDim;
        float kScale = _kScales[layer], vScale = _vScales[layer];
        int gemmaNorm = spec.GemmaQkNorm ? 1 : 0;
        (ulong axisPositions, int section0, int section1, int axes) = RopeAxes(rope);
        void** args = stackalloc void*[]
        {
            &src, &pp, &axisPositions, &section0, &section1, &axes, &sp, &table, &qn, &kn, &eps, &gemmaNorm, &rows, &heads, &kvHeads, &hd, &rotary,
            &qo, &kc, &vc, &kScale, &vScale,
        };
        // One warp per (row, head), PrepareWarps per block; a large prefill step's warps loop over several items.
        long items = (long)rows * (heads + 2 * kvHeads);
        LaunchKv("prepare_attention", (uint)Math.Min((items + PrepareWarps - 1) / PrepareWarps, MaxPrepareBlocks), 1, 1, 32 * PrepareWarps, args);
    }

    /// <summary>
    /// rope.cu's <c>RopeAxes</c> of a multi-axis RoPE: the step's per-axis positions (uploaded by <see cref="BeginStep"/>) and
    /// the first two sections; null and zeros for a RoPE of one axis.
    /// </summary>
    private (ulong Positions, int Section0, int Section1, int Axes) RopeAxes(RopeSpec rope)
    {
        if (rope.Sections is not { } sections)
        {
            return (0, 0, 0, 1);
        }

        if (sections.Length is < 1 or > 3 || sections.Sum() != rope.RotaryDim / 2)
        {
            throw new NotSupportedException($"RoPE sections [{string.Join(", ", sections)}]: the kernels take 1 to 3 axes whose sections add up to rotary_dim / 2 = {rope.RotaryDim / 2}.");
        }

        if (_batch?.RopePositions is null)
        {
            throw new InvalidOperationException($"A {sections.Length}-axis RoPE needs the step's per-axis positions (ForwardBatch.RopePositions).");
        }

        return (_ropePositions.Pointer, sections[0], sections.Length > 1 ? sections[1] : 0, sections.Length);
    }

    /// <summary>
    /// The cos/sin table of <paramref name="rope"/> for every position it serves, computed on the GPU the first time,
    /// one per <see cref="RopeSpec.Slot"/> (Gemma 3's local and global layers alternate between two, which stay put, so
    /// a recorded graph keeps pointing at both). Dynamic NTK RoPE hands a new frequency array as sequences outgrow the
    /// trained length; its slot's table is then recomputed in the same buffers (such models run eagerly, so no recorded
    /// graph points into them).
    /// </summary>
    private ulong RopeTable(RopeSpec rope)
    {
        while (_ropeTables.Count <= rope.Slot)
        {
            _ropeTables.Add(new RopeTableSlot());
        }

        RopeTableSlot slot = _ropeTables[rope.Slot];
        if (rope.RotaryDim == 0)
        {
            return slot.Table?.Pointer ?? 0;   // a layer without RoPE (SmolLM3's NoPE layers) reads no table
        }

        if (!ReferenceEquals(slot.For, rope.InverseFrequencies))
        {
            int half = rope.RotaryDim / 2, positions = rope.MaxPositions;
            slot.Frequencies = Grow(slot.Frequencies, half * sizeof(float), "RoPE frequencies");
            slot.Table = Grow(slot.Table, (long)positions * half * 2 * sizeof(float), "RoPE cos/sin table");
            UploadAsync<float>(slot.Frequencies.Pointer, rope.InverseFrequencies.AsSpan(0, half));
            ulong f = slot.Frequencies.Pointer, t = slot.Table.Pointer;
            float scaling = rope.AttentionScaling;
            void** args = stackalloc void*[] { &f, &half, &positions, &scaling, &t };
            _kernels.Launch("rope_table", Blocks((long)positions * half), 1, 256, args);
            slot.For = rope.InverseFrequencies;
        }

        return slot.Table!.Pointer;
    }

    /// <summary>The device buffers of one RoPE slot and the frequencies its table was computed from.</summary>
    private sealed class RopeTableSlot
    {
        public SafeDeviceMemoryHandle? Table, Frequencies;
        public float[]? For;
    }

    public void Scale(Tensor x, int rows, float factor)
    {
        ulong xp = (ulong)x.Data;
        long n = rows * x.Columns;
        void** args = stackalloc void*[] { &xp, &n, &factor };
        // The logits are fp32 whatever the model dtype: they take the fp32 instance.
        nint function = x.DType == ActivationDType ? KernelFunction(_typedKernels, "scale", _suffix)
            : x.DType == DType.F32 ? KernelFunction(_fp32Kernels, "scale", "f32")
            : throw new NotSupportedException($"Scale of a {x.DType} tensor in a {ActivationDType} model.");
        _kernels.Launch(function, "scale", Blocks(n), 1, 1, 256, args);
    }

    public void SiluMul(Tensor gateUp, int rows, Tensor output, ActivationQuantization? quantizeFor = null) =>
        LaunchGatedActivation("silu_mul", "silu_mul_fp8", gateUp, rows, output, quantizeFor);

    /// <summary>
    /// A gated activation over the fused gate/up projection (<c>silu_mul</c>, Gemma's <c>gelu_tanh_mul</c>), or, for an
    /// FP8 down projection whose input scheme is <paramref name="quantizeFor"/>, its one-block-per-row form that also
    /// writes the products' codes (<paramref name="fp8Kernel"/>, fp8_quant.cu).
    /// </summary>
    private void LaunchGatedActivation(string kernel, string fp8Kernel, Tensor gateUp, int rows, Tensor output, ActivationQuantization? quantizeFor)
    {
        const int threads = 128;
        int d = (int)output.Columns;
        ulong g = (ulong)gateUp.Data, o = (ulong)output.Data;
        uint rowThreads = Math.Min(Threads(Vectors(d)), HeldRowThreads);
        if (HoldsRow(d, rowThreads) && CodesAhead(output, rows, d, quantizeFor) is { } codes)
        {
            void** fused = stackalloc void*[] { &g, &d, &o, &codes };
            Launch(fp8Kernel, (uint)rows, 1, rowThreads, fused);
            QuantizedAhead(output, rows, d, quantizeFor!);
            return;
        }

        void** args = stackalloc void*[] { &g, &d, &o };
        Launch(kernel, (uint)rows, (uint)((Vectors(d) + threads - 1) / threads), threads, args);
    }

    /// <summary>The 16-byte vectors (Vec16 of common.cuh) a row of <paramref name="elements"/> model-dtype values takes.</summary>
    private long Vectors(long elements)
    {
        int perVector = 16 / ActivationDType.ByteSize();
        return (elements + perVector - 1) / perVector;
    }

    public void GatherLogitsRows(Tensor x, int first, int count, Tensor output)
    {
        ulong xp = (ulong)x.Data, rp = _logitsRows.Pointer + (ulong)first * sizeof(int), o = (ulong)output.Data;
        int cols = (int)x.Columns;
        void** args = stackalloc void*[] { &xp, &rp, &cols, &o };
        Launch("gather_rows", (uint)count, 1, Threads(cols), args);
    }

    public void CopyColumns(Tensor x, int rows, Tensor y, int offset)
    {
        ulong xp = (ulong)x.Data, yp = (ulong)y.Data;
        int cols = (int)x.Columns, yCols = (int)y.Columns;
        void** args = stackalloc void*[] { &xp, &cols, &yp, &yCols, &offset };
        Launch("copy_columns", (uint)rows, 1, Threads(cols), args);
    }

    /// <summary>Launches the model-dtype instance of a kernel (suffix _bf16, say).</summary>
    private void Launch(string kernel, uint gridX, uint gridY, uint gridZ, uint blockX, void** args) =>
        _kernels.Launch(KernelFunction(_typedKernels, kernel, _suffix), kernel, gridX, gridY, gridZ, blockX, args);

    private void Launch(string kernel, uint gridX, uint gridY, uint blockX, void** args) => Launch(kernel, gridX, gridY, 1, blockX, args);

    /// <summary>Launches the instance of a kernel for the model dtype and the KV cache's (suffix _bf16_e4m3, say).</summary>
    private void LaunchKv(string kernel, uint gridX, uint gridY, uint gridZ, uint blockX, void** args) =>
        _kernels.Launch(KernelFunction(_kvTypedKernels, kernel, _kvSuffix), kernel, gridX, gridY, gridZ, blockX, args);

    /// <summary>The handle of <c>{kernel}_{suffix}</c>, looked up once: a launch builds no name string.</summary>
    private nint KernelFunction(Dictionary<string, nint> cache, string kernel, string suffix)
    {
        if (!cache.TryGetValue(kernel, out nint function))
        {
            function = _kernels.Function($"{kernel}_{suffix}");
            cache[kernel] = function;
        }

        return function;
    }

    private static int CudaType(DType dtype) => dtype switch
    {
        DType.F32 => Cublas.CUDA_R_32F,
        DType.F16 => Cublas.CUDA_R_16F,
        DType.BF16 => Cublas.CUDA_R_16BF,
        DType.F8E4M3 => Cublas.CUDA_R_8F_E4M3,
        _ => throw new NotSupportedException($"dtype {dtype}"),
    };
}
