using System.Numerics;
using Celer.Backends.Cuda.Interop;
using Celer.Models.Backend;
using Celer.Models.Quantization;
using Celer.Models.Weights;

namespace Celer.Backends.Cuda;

/// <summary>
/// The sparse mixture-of-experts MLP (<c>moe.cu</c>, vLLM's fused_moe written for Celer) and Qwen2-MoE's sigmoid-gated
/// shared expert. Five launches per call, none waiting for the host: routing, the per-expert grouping of the (row, slot)
/// pairs padded to the GEMM's row tile, the gate/up GEMM with SiLU·mul in its epilogue, the down GEMM scaled by the
/// routing weights, and the per-row sum; a decode step of few rows takes three (routing, then a warp per pair and column
/// for gate/up and for down, which also adds each row's pairs). Grids depend only on the rows, top-k and expert count (the most tiles any
/// routing can make; blocks past the real count exit), so a recorded graph replays any routing. gpt-oss's MXFP4 experts
/// stay packed in bf16 models on sm_80+ (<see cref="LoadMxfp4"/>), and FP8 checkpoints' experts as their E4M3 codes with
/// scales per row or per 128 × 128 block (<see cref="LoadFp8"/>), and 4-bit integer checkpoints' experts as their codes
/// with a scale and zero point per group (<see cref="LoadExperts"/>): the *_mxfp4, *_fp8 and *_int4 kernels decode them
/// in registers (FP8 in fp32 models: in the CUDA-core GEMM's tile) and multiply the model-dtype inputs (W8A16 / W4A16,
/// as vLLM's Marlin MoE kernels).
/// </summary>
public sealed unsafe partial class CudaBackend
{
    // Rows per pass: the scratch (an fp32 result per pair and hidden column, the intermediate per pair) is sized for
    // at most this many rows, ~320 MB for Qwen3-235B's shape; 2048 rows still give every expert of a 128-expert top-8
    // model 128 rows (two 64-row tiles) on average.
    private const int MoeChunkRows = 2048;
    private const int MoeMaxExperts = 512;   // MOE_MAX_EXPERTS: a row's logits in one warp's registers
    private const int MoeThreads = 128;      // MOE_THREADS
    private const int MoeBlockN = 64;        // columns per block of the tensor-core GEMM
    private const int MoeCodesDownBlockN = 128;   // columns per block of moe_gemm_down_m16_{mxfp4,fp8} (four warps of 32)
    private const int MoeSimtRows = 16, MoeSimtBlockN = 32;   // MOE_SIMT_BM and the CUDA-core GEMM's columns
    private const int MoeAlignThreads = 1024;
    private const int MoeGemvWarps = 4;       // MOE_GEMV_WARPS
    private const int MoeGemvDownWarps = 16;  // moe_gemv_down_sum's warps per block where top-k ≤ 16 (top-k otherwise)
    private const int MoeGemvMaxPairs = 64;

#pragma warning disable CA2213 // Track/Grow put it in _allocations, which Dispose disposes
    private SafeDeviceMemoryHandle? _moeScratch;
#pragma warning restore CA2213
    private long _moeScratchBytes;

    /// <summary>
    /// MXFP4 weights as stored, in bf16 models on cards with the tensor-core GEMM (the decoded tile feeds its MMAs); fp32
    /// and fp16 models take the decoded weights.
    /// </summary>
    public Tensor? LoadMxfp4(string name, WeightTensor blocks, WeightTensor scales)
    {
        int rows = blocks.Shape[0], columns = (int)(blocks.ElementCount / rows * 2);
        if (ActivationDType != DType.BF16 || _device.ComputeCapability.Major < 8)
        {
            return null;
        }

        if (blocks.DType != DType.U8 || scales.DType != DType.U8 || columns % 32 != 0 || scales.ElementCount != (long)rows * (columns / 32))
        {
            throw new ModelLoadException($"MXFP4 weight '{name}': codes {blocks} and scales {scales} are not {rows} rows of U8 blocks of 32 values");
        }

        _device.MakeCurrent();
        ulong codes = AllocateWeight(blocks.ByteLength), exponents = AllocateWeight(scales.ByteLength);
        Upload(blocks, codes, DType.U8);
        Upload(scales, exponents, DType.U8);
        var scaleTensor = new Tensor(name + "_scales", (nint)exponents, DType.U8, [rows, columns / 32]);
        return new Tensor(name, (nint)codes, DType.U8, [rows, columns / 2]) { Mxfp4 = new PackedMxfp4(columns, scaleTensor) };
    }

    /// <summary>
    /// Expert projections stacked for <see cref="MoeExperts"/>. A 4-bit integer checkpoint's experts (GPTQ, AWQ,
    /// compressed-tensors W4A16) stay packed in 16-bit models on sm_80+, a quarter of their bytes, in moe.cu's
    /// MoeCodes&lt;MOE_INT4&gt; layout (<see cref="Int4Layout.Experts"/>), when the kernels can read them: static groups of a
    /// power of two from 32 that divide the input width (per-channel scales are repeated over the widest such group),
    /// and no act-order column permutation (each expert would need its input gathered alike). Other integer experts
    /// (8-bit, act-order, narrower groups, fp32 models) are dequantized into the model dtype at load, one part at a time.
    /// </summary>
    public Tensor LoadExperts(string name, params WeightTensor[] parts)
    {
        if (!parts.Any(p => p.Packed is not null))
        {
            return LoadStacked(name, parts);
        }

        IntWeights[] weights = IntWeights.Stacked(name, parts);
        int columns = weights[0].Columns, rows = weights.Sum(w => w.Rows);
        int storedGroup = weights[0].GroupSize == 0 ? columns : weights[0].GroupSize;
        bool packable = ActivationDType != DType.F32 && _device.ComputeCapability.Major >= 8 && columns % MoeInt4MinGroup == 0
            && IntWeights.Packable(weights, 4, out int[]? order) && order is null
            && (weights[0].GroupSize == 0 || (storedGroup >= MoeInt4MinGroup && BitOperations.IsPow2(storedGroup) && columns % storedGroup == 0));
        if (!packable)
        {
            return LoadDequantized(name, parts);
        }

        // The kernels' group: the stored one, or for per-channel scales the widest power of two dividing the width.
        int group = weights[0].GroupSize == 0 ? 1 << BitOperations.TrailingZeroCount(columns) : storedGroup, groups = columns / group;
        // Value v of word q in nibble v / 2 + 4 (v % 2), so that int4_dequant8 decodes the pairs 2j, 2j + 1.
        uint[] codes = IntWeights.PackCodes(weights, order: null, static (q, i) => (q * 8) + (i % 4 * 2) + (i / 4));
        var words = new uint[(long)rows * groups];
        long row = 0;
        foreach (IntWeights w in weights)
        {
            for (int r = 0; r < w.Rows; r++, row++)
            {
                for (int j = 0; j < groups; j++)
                {
                    int stored = (r * w.Groups) + w.GroupOf(j * group);
                    words[(row * groups) + j] = ScaleWord(w.Scales[stored], w.Zeros[stored]);
                }
            }
        }

        _device.MakeCurrent();
        ulong codeMemory = AllocateWeight((long)codes.Length * sizeof(uint)), wordMemory = AllocateWeight((long)words.Length * sizeof(uint));
        fixed (uint* c = codes)
        fixed (uint* s = words)
        {
            Upload(new WeightTensor(name, DType.I32, [rows, columns / 8], (nint)c, (long)codes.Length * sizeof(uint)), codeMemory, DType.I32);
            Upload(new WeightTensor(name + ".scales_and_zeros", DType.I32, [rows, groups], (nint)s, (long)words.Length * sizeof(uint)), wordMemory, DType.I32);
            _device.Synchronize();   // the host arrays are released on return
        }

        var scales = new Tensor(name + ".scales_and_zeros", (nint)wordMemory, DType.I32, [rows, groups]);
        return new Tensor(name, (nint)codeMemory, DType.I32, [rows, columns / 8]) { Int4 = new PackedInt4(columns, group, groups, scales, null, Int4Layout.Experts) };
    }

    // MoeCodes<MOE_INT4>: one scale word per 16-byte vector of 32 codes at most.
    private const int MoeInt4MinGroup = 32;

    public void MoeExperts(Tensor x, int rows, Tensor routerLogits, int topK, bool normalize, Tensor gateUp, Tensor down, Tensor output, ExpertOptions? experts = null)
    {
        int count = (int)routerLogits.Columns, hidden = (int)x.Columns;
        int intermediate = gateUp.Rows / (2 * count);
        MoeWeights format = MoeFormat(gateUp);
        if (MoeFormat(down) != format)
        {
            throw new ArgumentException($"MoeExperts: gate_up {gateUp} and down {down} must be stored alike (both MXFP4, both FP8, both 4-bit, or none).");
        }
        if (experts is not null && (experts.GateUpBias.ElementCount != gateUp.Rows || experts.DownBias.ElementCount != down.Rows
            || experts.GateUpBias.DType != ActivationDType || experts.DownBias.DType != ActivationDType || !(experts.SwigluLimit > 0)))
        {
            throw new ArgumentException($"MoeExperts: biases {experts.GateUpBias} and {experts.DownBias} must match gate_up {gateUp} and down {down} in {ActivationDType}, with a positive SwiGLU limit.");
        }

        MoeBiases biases = experts is null ? default : new((ulong)experts.GateUpBias.Data, (ulong)experts.DownBias.Data, experts.SwigluLimit);
        if (count > MoeMaxExperts || topK < 1 || topK > Math.Min(32, count))
        {
            throw new NotSupportedException($"MoeExperts takes up to {MoeMaxExperts} experts and top-k 1..32 (≤ experts), not {count} experts with top-k {topK}.");
        }

        if (gateUp.Rows != 2 * count * intermediate || MoeColumns(gateUp) != hidden || down.Rows != count * hidden
            || MoeColumns(down) != intermediate || output.Columns != hidden)
        {
            throw new ArgumentException($"MoeExperts: gate_up {gateUp}, down {down}, x {x} and output {output} do not fit {count} experts.");
        }

        if (rows == 0)
        {
            return;
        }

        int capacity = Math.Min(x.Rows, MoeChunkRows);
        MoeLayout layout = new(capacity, topK, count, hidden, intermediate, ActivationDType.ByteSize());
        if (layout.Bytes > _moeScratchBytes)
        {
            // The first eager step (the startup warm-up) sizes it; Grow refuses while a graph is being recorded.
            _moeScratch = Grow(_moeScratch, layout.Bytes, "MoE scratch");
            _moeScratchBytes = layout.Bytes;
        }

        bool tensorCores = ActivationDType != DType.F32 && _device.ComputeCapability.Major >= 8 && hidden % 8 == 0 && intermediate % 8 == 0
            && x.Data % 16 == 0 && gateUp.Data % 16 == 0 && down.Data % 16 == 0;
        if (format is MoeWeights.Mxfp4 or MoeWeights.Int4 && !tensorCores)
        {
            throw new ArgumentException($"MoeExperts: {format} experts need a 16-bit model dtype and 16-byte aligned tensors (x {x} in {ActivationDType}).");
        }

        if (format == MoeWeights.Fp8 && (hidden % MoeFp8Vector != 0 || intermediate % MoeFp8Vector != 0))
        {
            throw new NotSupportedException($"MoeExperts: FP8 experts are decoded {MoeFp8Vector} values at a time; hidden size {hidden} and expert intermediate size {intermediate} must be multiples of {MoeFp8Vector}.");
        }
        ulong scratch = _moeScratch!.Pointer;
        for (int first = 0; first < rows; first += capacity)
        {
            MoePass(x, first, Math.Min(capacity, rows - first), routerLogits, topK, normalize, gateUp, down, output, layout, scratch, tensorCores, biases);
        }
    }

    // FP8 experts: the 64-row tiles decode 32-value stages of each row (moe.cu's MOE_BK).
    private const int MoeFp8Vector = 32;

    /// <summary>How the experts' weights are stored on the card, which picks the kernels' instances.</summary>
    private enum MoeWeights
    {
        Plain,   // the model dtype
        Mxfp4,   // LoadMxfp4's codes and E8M0 scale bytes: the *_mxfp4 kernels
        Fp8,     // LoadFp8's E4M3 codes and fp32 scales: the *_fp8 kernels
        Int4,    // LoadExperts' 4-bit codes and scale words: the *_int4 kernels
    }

    private static MoeWeights MoeFormat(Tensor w) =>
        w.Mxfp4 is not null ? MoeWeights.Mxfp4
        : w.DType == DType.F8E4M3 && w.Scales is not null ? MoeWeights.Fp8
        : w.Int4 is { Layout: Int4Layout.Experts } ? MoeWeights.Int4
        : w.Int4 is not null ? throw new ArgumentException($"MoeExperts: {w} is a 4-bit linear layer's weight, not experts loaded by LoadExperts.")
        : MoeWeights.Plain;

    /// <summary>The input width of a stacked experts' weight (codes count bytes or words in its shape).</summary>
    private static long MoeColumns(Tensor w) => w.Mxfp4?.Columns ?? w.Int4?.Columns ?? w.Columns;

    /// <summary>
    /// The scale pointer and scale-grid row stride the GEMM kernels take for <paramref name="w"/>: MXFP4's scale bytes; FP8's
    /// fp32 scales, one per row (stride 0) or the padded grid of 128 × 128 blocks; 4-bit codes' scale words with the
    /// log2 of their group in place of the stride; none (0, 0) for model-dtype weights.
    /// </summary>
    private static (ulong Scales, int Stride) MoeScales(Tensor w) => MoeFormat(w) switch
    {
        MoeWeights.Mxfp4 => ((ulong)w.Mxfp4!.Scales.Data, 0),
        MoeWeights.Fp8 => ((ulong)w.Scales!.Data, w.Scales.Shape.Length == 2 ? w.Scales.Shape[1] : 0),
        MoeWeights.Int4 => ((ulong)w.Int4!.ScalesAndZeros.Data, BitOperations.Log2((uint)w.Int4.GroupSize)),
        _ => (0, 0),
    };

    /// <summary>gpt-oss's expert biases (device pointers, 0: none) and SwiGLU limit (0: SiLU·mul), as the GEMM kernels take them.</summary>
    private readonly record struct MoeBiases(ulong GateUp, ulong Down, float SwigluLimit);

    private void MoePass(Tensor x, int first, int rows, Tensor routerLogits, int topK, bool normalize, Tensor gateUp, Tensor down,
        Tensor output, MoeLayout layout, ulong scratch, bool tensorCores, MoeBiases biases)
    {
        ulong gateUpBias = biases.GateUp, downBias = biases.Down;
        float limit = biases.SwigluLimit;
        int experts = layout.Experts, hidden = layout.Hidden, intermediate = layout.Intermediate, pairs = rows * topK;
        int elementBytes = ActivationDType.ByteSize();
        // 64-row tiles once the experts average more than 16 rows; decode steps take 16-row tiles, each reading its
        // expert's weights once for at most 16 rows.
        int bm = !tensorCores ? MoeSimtRows : (long)pairs > 16L * experts ? 64 : 16;
        int maxTiles = MoeLayout.MaxTiles(pairs, experts, bm);

        ulong logits = (ulong)routerLogits.Data + (ulong)((long)first * experts * elementBytes);
        ulong ids = scratch + layout.TopkIds, weights = scratch + layout.TopkWeights, rank = scratch + layout.Rank;
        ulong sorted = scratch + layout.Sorted, tileExpert = scratch + layout.TileExpert, numTiles = scratch + layout.NumTiles;
        ulong inter = scratch + layout.Inter, pairOut = scratch + layout.PairOut;
        int norm = normalize ? 1 : 0;

        void** routeArgs = stackalloc void*[] { &logits, &rows, &experts, &topK, &norm, &ids, &weights };
        Launch("moe_route", (uint)((rows + MoeThreads / 32 - 1) / (MoeThreads / 32)), 1, MoeThreads, routeArgs);
        ulong xp = (ulong)x.Data + (ulong)((long)first * hidden * elementBytes), w1 = (ulong)gateUp.Data, w2 = (ulong)down.Data;
        ulong o = (ulong)output.Data + (ulong)((long)first * hidden * elementBytes);
        // Codes: the kernels' *_mxfp4 and *_fp8 instances, which read the scales (every GEMM kernel takes a scale pointer
        // and the scale grid's row stride, 0 for 16- and 32-bit weights).
        MoeWeights stored = MoeFormat(gateUp);
        (ulong s1, int ld1) = MoeScales(gateUp);
        (ulong s2, int ld2) = MoeScales(down);
        string format = stored switch { MoeWeights.Mxfp4 => "_mxfp4", MoeWeights.Fp8 => "_fp8", MoeWeights.Int4 => "_int4", _ => "" };
        // FP8 off the tensor cores (fp32 models) takes the CUDA-core GEMM: moe_gemv decodes FP8 into 16-bit pairs.
        if ((tensorCores || stored == MoeWeights.Plain) && UsesMoeGemv(pairs, experts, hidden, intermediate, xp, w1, w2))
        {
            // A decode of few rows: a warp per (pair, column), no align pass; the down pass adds each row's pairs
            // (moe.cu's moe_gemv_gate_up and moe_gemv_down_sum).
            int xDiv = topK;
            uint gateUpBlocks = (uint)((intermediate + MoeGemvWarps - 1) / MoeGemvWarps);
            void** gateUpGemv = stackalloc void*[] { &xp, &xDiv, &ids, &w1, &s1, &ld1, &intermediate, &hidden, &inter, &gateUpBias, &limit };
            Launch("moe_gemv_gate_up" + format, gateUpBlocks, (uint)pairs, 32 * MoeGemvWarps, gateUpGemv);
            int columns = Math.Max(1, MoeGemvDownWarps / topK);   // a block: the top_k warps of each of its columns
            void** downGemv = stackalloc void*[] { &inter, &topK, &ids, &w2, &s2, &ld2, &hidden, &intermediate, &weights, &o, &downBias };
            Launch("moe_gemv_down_sum" + format, (uint)((hidden + columns - 1) / columns), (uint)rows, (uint)(32 * topK * columns), downGemv);
            return;
        }

        void** alignArgs = stackalloc void*[] { &ids, &pairs, &experts, &bm, &rank, &sorted, &tileExpert, &numTiles };
        _kernels.Launch("moe_align", 1, 1, MoeAlignThreads, alignArgs);

        int topKDiv = topK, one = 1;
        string gateUpKernel = (tensorCores ? (bm == 64 ? "moe_gemm_gate_up_m64" : "moe_gemm_gate_up_m16") : "moe_gemm_gate_up_simt") + format;
        string downKernel = (tensorCores ? (bm == 64 ? "moe_gemm_down_m64" : "moe_gemm_down_m16") : "moe_gemm_down_simt") + format;
        int blockN = tensorCores ? MoeBlockN : MoeSimtBlockN, downBlockN = tensorCores && stored != MoeWeights.Plain && bm == 16 ? MoeCodesDownBlockN : blockN;

        uint gateUpGrid = (uint)((intermediate + blockN - 1) / blockN), downGrid = (uint)((hidden + downBlockN - 1) / downBlockN);
        void** gateUpArgs = stackalloc void*[] { &xp, &topKDiv, &sorted, &tileExpert, &numTiles, &pairs, &w1, &s1, &ld1, &intermediate, &hidden, &weights, &inter, &gateUpBias, &limit };
        Launch(gateUpKernel, (uint)maxTiles, gateUpGrid, MoeThreads, gateUpArgs);
        void** downArgs = stackalloc void*[] { &inter, &one, &sorted, &tileExpert, &numTiles, &pairs, &w2, &s2, &ld2, &hidden, &intermediate, &weights, &pairOut, &downBias, &limit };
        Launch(downKernel, (uint)maxTiles, downGrid, MoeThreads, downArgs);
        MoeSum(pairOut, rows, topK, hidden, o);
    }

    // moe_sum's block: one column per thread, the row's columns over gridDim.y blocks.
    private const int MoeSumThreads = 128;

    private void MoeSum(ulong pairOut, int rows, int topK, int hidden, ulong output)
    {
        void** sumArgs = stackalloc void*[] { &pairOut, &topK, &hidden, &output };
        Launch("moe_sum", (uint)rows, (uint)((hidden + MoeSumThreads - 1) / MoeSumThreads), MoeSumThreads, sumArgs);
    }

    /// <summary>
    /// The most device memory <see cref="MoeExperts"/>' scratch takes for a model (a pass of <see cref="MoeChunkRows"/> rows),
    /// for the loader's KV-cache budget: the scratch is allocated at the first eager step, after the cache.
    /// </summary>
    public static long MoeScratchBytes(int topK, int experts, int hidden, int intermediate, DType activation) =>
        new MoeLayout(MoeChunkRows, topK, experts, hidden, intermediate, activation.ByteSize()).Bytes;

    /// <summary>
    /// moe_gemv for steps of at most <see cref="MoeGemvMaxPairs"/> pairs and no more pairs than experts (each expert's
    /// weights are then read about once per step either way), where its rows are whole 16-byte vectors.
    /// </summary>
    private bool UsesMoeGemv(int pairs, int experts, int hidden, int intermediate, ulong x, ulong gateUp, ulong down)
    {
        int perVector = 16 / ActivationDType.ByteSize();
        return pairs <= Math.Min(MoeGemvMaxPairs, experts) && hidden % perVector == 0 && intermediate % perVector == 0
            && x % 16 == 0 && gateUp % 16 == 0 && down % 16 == 0;
    }

    public void AddSigmoidGated(Tensor x, Tensor gate, int rows, Tensor output)
    {
        if (gate.Columns != 1 || x.Columns != output.Columns)
        {
            throw new ArgumentException($"AddSigmoidGated: gate {gate} must be [rows, 1] and x {x} as wide as output {output}.");
        }

        if (rows == 0)
        {
            return;
        }

        ulong xp = (ulong)x.Data, gp = (ulong)gate.Data, o = (ulong)output.Data;
        int cols = (int)x.Columns;
        void** args = stackalloc void*[] { &xp, &gp, &cols, &o };
        Launch("add_sigmoid_gated", (uint)rows, 1, Threads(Math.Min(cols, 256)), args);
    }

    /// <summary>
    /// Byte offsets of the MoE scratch for a pass of up to <c>capacity</c> rows, every piece 256-byte aligned: top-k ids
    /// and weights, the align kernel's ranks, the sorted pair list and tile experts (room for 16- and 64-row tiles), the
    /// tile count, the intermediate [pairs, I] in the model dtype and the fp32 per-pair down results [pairs, hidden].
    /// </summary>
    private readonly struct MoeLayout
    {
        public readonly int Experts, Hidden, Intermediate;
        public readonly ulong TopkIds, TopkWeights, Rank, Sorted, TileExpert, NumTiles, Inter, PairOut;
        public readonly long Bytes;

        public MoeLayout(int capacity, int topK, int experts, int hidden, int intermediate, int elementBytes)
        {
            Experts = experts;
            Hidden = hidden;
            Intermediate = intermediate;
            long pairs = (long)capacity * topK, offset = 0;
            long slots = Math.Max(MaxTiles(pairs, experts, 16) * 16L, MaxTiles(pairs, experts, 64) * 64L);
            TopkIds = Take(ref offset, pairs * sizeof(int));
            TopkWeights = Take(ref offset, pairs * sizeof(float));
            Rank = Take(ref offset, pairs * sizeof(int));
            Sorted = Take(ref offset, slots * sizeof(int));
            TileExpert = Take(ref offset, MaxTiles(pairs, experts, 16) * sizeof(int));
            NumTiles = Take(ref offset, sizeof(int));
            Inter = Take(ref offset, pairs * intermediate * elementBytes);
            PairOut = Take(ref offset, pairs * hidden * sizeof(float));
            Bytes = offset;
        }

        /// <summary>The most row tiles <paramref name="pairs"/> pairs can make: one partial tile per expert they reach at most.</summary>
        public static int MaxTiles(long pairs, int experts, int bm) => checked((int)((pairs + bm - 1) / bm + Math.Min(experts, pairs)));

        private static ulong Take(ref long offset, long bytes)
        {
            ulong at = (ulong)offset;
            offset += (bytes + 255) & ~255L;
            return at;
        }
    }
}
