using Celer.Backends.Cuda.Interop;
using Celer.Models.Backend;
using Celer.Models.Quantization;
using Celer.Models.Weights;

namespace Celer.Backends.Cuda;

/// <summary>How <see cref="CudaBackend.Linear"/> picks the kernel of a GEMM.</summary>
internal enum GemmPolicy
{
    /// <summary>
    /// Up to <see cref="CudaBackend.TunedRowsLimit"/> rows, the fastest on this device of cuBLASLt's heuristic
    /// candidates, <c>cublasGemmEx</c> and the skinny kernels, timed per weight shape and row bucket; beyond, cuBLASLt's
    /// first candidate.
    /// </summary>
    Tune,

    /// <summary>
    /// The skinny kernels wherever they apply (FP8 layers of 1–8 rows in blocks of <see cref="CudaBackend.Fp8SkinnyWarps"/>
    /// warps), else cuBLASLt's first candidate (tests).
    /// </summary>
    Skinny,

    /// <summary>cuBLASLt's candidate <see cref="CudaBackend.LtCandidate"/> (tests).</summary>
    CublasLt,

    /// <summary><c>cublasGemmEx</c> with the library's default algorithm and a separate bias kernel (tests).</summary>
    CublasGemmEx,
}

/// <summary>
/// The GEMMs. cuBLASLt runs them with the algorithm chosen per weight shape (n, k, dtypes, pointer alignment) and row
/// bucket (the next power of two), and adds a bias of the output's dtype in its epilogue instead of a second kernel.
/// For the buckets of decode steps (up to <see cref="TunedRowsLimit"/> rows), which CUDA graphs replay thousands of
/// times, the first eager step that meets a shape times cuBLASLt's top heuristic candidates, <c>cublasGemmEx</c> and,
/// up to 64 rows, the skinny kernels, and keeps the fastest: the heuristic's first pick is often not the fastest at a
/// few rows (where split-k and small tiles trade against each other), and what wins differs by card and library
/// version. Larger buckets (prefill) take the heuristic's first candidate without timing.
/// </summary>
public sealed unsafe partial class CudaBackend
{
    public const int TunedRowsLimit = 512;
    private const int HeuristicCandidates = 8;
    private const int TuneRepeats = 5;

    private readonly Dictionary<GemmShape, GemmPlan> _gemmPlans = [];
    private readonly ulong _gemmWorkspace;

    internal GemmPolicy GemmPolicy { get; set; } = GemmPolicy.Tune;

    /// <summary>Which of cuBLASLt's heuristic candidates <see cref="GemmPolicy.CublasLt"/> runs (0: its first pick).</summary>
    internal int LtCandidate { get; set; }

    /// <summary>The block size, 4 or 8 warps, of the FP8 skinny kernel under <see cref="GemmPolicy.Skinny"/> (tests).</summary>
    internal int Fp8SkinnyWarps { get; set; } = 4;

    private enum GemmKernel : byte { CublasLt, CublasGemmEx, Skinny, SkinnyFp8 }

    /// <summary>
    /// What runs one GEMM; <see cref="Candidate"/> is the algorithm's rank in cuBLASLt's heuristic (for the log),
    /// <see cref="Warps"/> the block size of the FP8 skinny kernel.
    /// </summary>
    private readonly record struct GemmChoice(GemmKernel Kernel, CublasLt.MatmulAlgo Algo = default, int Candidate = 0, int Warps = 0);

    /// <summary>What a cuBLASLt plan depends on besides the rows: pointers aligned to fewer bytes take other algorithms.</summary>
    private readonly record struct GemmShape(int N, int K, DType Input, DType Output, bool FusedBias, int Alignment, Fp8Scaling Scaling);

    public void Linear(Tensor x, int rows, Tensor weight, Tensor? bias, Tensor y, ActivationQuantization? activations = null)
    {
        if (weight.Int4 is not null && activations is null)
        {
            Int4Linear(x, rows, weight, bias, y);
        }
        else if (weight.DType == DType.F8E4M3)
        {
            Fp8Linear(x, rows, weight, bias, y, activations);
        }
        else if (activations is not null)
        {
            throw new ArgumentException($"'{weight.Name}' is {weight.DType}: only an FP8 weight's layer quantizes its input.");
        }
        else
        {
            RunLinear(x, rows, weight, bias, y);
        }
    }

    /// <summary>The GEMM of <see cref="Linear"/> with the kernel chosen for its shape and row bucket.</summary>
    private void RunLinear(Tensor x, int rows, Tensor weight, Tensor? bias, Tensor y)
    {
        GemmPlan plan = Plan(x, weight, bias, y);
        RunGemm(plan, Choice(plan, x, rows, weight, bias, y), x, rows, weight, bias, y);
    }

    /// <summary>The kernel chosen for the plan's shape at this row bucket, chosen (and timed) at its first use.</summary>
    private GemmChoice Choice(GemmPlan plan, Tensor x, int rows, Tensor weight, Tensor? bias, Tensor y) =>
        plan.Choices.TryGetValue(RowBucket(rows), out GemmChoice choice) ? choice : Choose(plan, x, rows, weight, bias, y);

    /// <summary>The next power of two: row counts between two buckets run the larger bucket's algorithm.</summary>
    private static int RowBucket(int rows) => (int)Math.Min(1u << 30, System.Numerics.BitOperations.RoundUpToPowerOf2((uint)rows));

    private GemmPlan Plan(Tensor x, Tensor weight, Tensor? bias, Tensor y)
    {
        Fp8Scaling scaling = weight.DType != DType.F8E4M3 ? Fp8Scaling.None : weight.Scales!.Shape.Length == 2 ? Fp8Scaling.Blocks : Fp8Scaling.Rows;
        // The bias joins the epilogue when it is in the output's dtype (cuBLASLt's default bias type); else its own kernel
        // (always for FP8 GEMMs, whose block-scaled kinds take no epilogue).
        bool fuseBias = bias is not null && bias.DType == y.DType && scaling == Fp8Scaling.None;
        int alignment = Alignment((ulong)x.Data) & Alignment((ulong)weight.Data) & Alignment((ulong)y.Data)
            & (fuseBias ? Alignment((ulong)bias!.Data) : 256);
        var shape = new GemmShape(weight.Rows, (int)weight.Columns, weight.DType, y.DType, fuseBias, alignment, scaling);
        if (!_gemmPlans.TryGetValue(shape, out GemmPlan? plan))
        {
            plan = new GemmPlan(shape, CudaType(shape.Input), CudaType(shape.Output), CublasWorkspaceBytes);
            _gemmPlans[shape] = plan;
        }

        // This GEMM's scales; the heuristic already wants them (it refuses a vector or block scale mode without a pointer).
        if (scaling != Fp8Scaling.None)
        {
            plan.SetScales((ulong)weight.Scales!.Data, (ulong)x.Scales!.Data);
        }

        return plan;
    }

    /// <summary>The largest power of two up to 256 that divides the address (cuBLASLt's alignment preference).</summary>
    private static int Alignment(ulong address) =>
        address == 0 ? 256 : Math.Min(256, 1 << System.Numerics.BitOperations.TrailingZeroCount(address));

    private GemmChoice Choose(GemmPlan plan, Tensor x, int rows, Tensor weight, Tensor? bias, Tensor y)
    {
        int bucket = RowBucket(rows);
        bool fp8 = plan.Shape.Scaling != Fp8Scaling.None;
        switch (GemmPolicy)
        {
            case GemmPolicy.Skinny when fp8 && bucket <= SkinnyFp8Rows && y.DType == ActivationDType:
                return new GemmChoice(GemmKernel.SkinnyFp8, Warps: Fp8SkinnyWarps);
            case GemmPolicy.Skinny when SkinnyGemmFits(x, rows, weight, y):
                return new GemmChoice(GemmKernel.Skinny);
            case GemmPolicy.CublasGemmEx when !fp8:
                return new GemmChoice(GemmKernel.CublasGemmEx);
            case GemmPolicy.CublasLt:
                Span<CublasLt.HeuristicResult> results = stackalloc CublasLt.HeuristicResult[HeuristicCandidates];
                int count = Heuristics(plan, bucket, results);
                int pick = Math.Min(LtCandidate, count - 1);
                return count == 0 ? FirstCandidate(plan, bucket) : new GemmChoice(GemmKernel.CublasLt, results[pick].Algo, pick);
            case GemmPolicy.Tune when bucket <= TunedRowsLimit && !_capturing:
                Tune(plan, x, weight, bias, y);
                if (plan.Choices.TryGetValue(bucket, out GemmChoice tuned))
                {
                    return tuned;
                }

                break;
        }

        // Not timed: a large bucket, or a shape first met while a graph records (no timing inside a capture; the choice
        // is not kept, so a later eager step still tunes it).
        GemmChoice first = FirstCandidate(plan, bucket);
        if (!_capturing || bucket > TunedRowsLimit)
        {
            plan.Choices[bucket] = first;
        }

        return first;
    }

    private GemmChoice FirstCandidate(GemmPlan plan, int bucket)
    {
        Span<CublasLt.HeuristicResult> results = stackalloc CublasLt.HeuristicResult[1];
        if (Heuristics(plan, bucket, results) > 0)
        {
            return new GemmChoice(GemmKernel.CublasLt, results[0].Algo);
        }

        return plan.Shape.Scaling == Fp8Scaling.None ? new GemmChoice(GemmKernel.CublasGemmEx)
            : bucket <= SkinnyFp8Rows ? new GemmChoice(GemmKernel.SkinnyFp8, Warps: 4)
            : throw NoFp8Gemm(plan, bucket);
    }

    private NotSupportedException NoFp8Gemm(GemmPlan plan, int rows) => new(
        $"cuBLASLt ({_device.Name}) has no FP8 GEMM of {rows} rows by a [{plan.Shape.N}, {plan.Shape.K}] weight with {plan.Shape.Scaling} scales writing {plan.Shape.Output}; FP8 GEMMs need cuBLAS 12.9 or later.");

    /// <summary>cuBLASLt's candidates for <paramref name="rows"/> rows that fit the workspace, best first; 0 when none applies.</summary>
    private int Heuristics(GemmPlan plan, int rows, Span<CublasLt.HeuristicResult> results)
    {
        plan.SetRows(LtRows(plan, rows));
        int returned;
        fixed (CublasLt.HeuristicResult* r = results)
        {
            int status = CublasLt.cublasLtMatmulAlgoGetHeuristic(_device.CublasLtHandle, plan.Desc, plan.WeightLayout, plan.InputLayout,
                plan.OutputLayout, plan.OutputLayout, plan.Preference, results.Length, r, out returned);
            if (status == CublasLt.CUBLAS_STATUS_NOT_SUPPORTED)
            {
                return 0;
            }

            Cublas.Check(status, "cublasLtMatmulAlgoGetHeuristic");
        }

        int kept = 0;
        for (int i = 0; i < returned; i++)
        {
            if (results[i].State == 0 && results[i].WorkspaceSize <= CublasWorkspaceBytes)
            {
                results[kept++] = results[i];
            }
        }

        return kept;
    }

    private void RunGemm(GemmPlan plan, in GemmChoice choice, Tensor x, int rows, Tensor weight, Tensor? bias, Tensor y)
    {
        bool biasDone = false;
        switch (choice.Kernel)
        {
            case GemmKernel.Skinny:
                SkinnyGemm(x, rows, weight, y);
                break;
            case GemmKernel.SkinnyFp8:
                Fp8SkinnyGemm(x, rows, weight, y, choice.Warps);
                break;
            case GemmKernel.CublasGemmEx:
                CublasGemmEx(x, rows, weight, y);
                break;
            default:
                LtMatmul(plan, choice.Algo, x, LtRows(plan, rows), weight, bias, y);
                biasDone = plan.Shape.FusedBias;
                break;
        }

        if (bias is not null && !biasDone)
        {
            AddBias(y, rows, weight.Rows, bias);
        }
    }

    /// <summary>y[rows, columns] += bias, for a GEMM that did not add it in its epilogue.</summary>
    private void AddBias(Tensor y, int rows, int columns, Tensor bias)
    {
        ulong yp = (ulong)y.Data, bp = (ulong)bias.Data;
        long r = rows;
        void** args = stackalloc void*[] { &yp, &r, &columns, &bp };
        Launch(y.DType == ActivationDType ? "add_bias" : "add_bias_f32out", Blocks(r * columns), 1, 256, args);
    }

    // Row-major y[rows, n] = x[rows, k]·W[n, k]ᵀ is column-major yᵀ = W·xᵀ: A = W read transposed, B = x. Inputs are in
    // the model dtype, the output in y's (the model dtype, or fp32 for the logits), accumulation in fp32.
    private void LtMatmul(GemmPlan plan, CublasLt.MatmulAlgo algo, Tensor x, int rows, Tensor weight, Tensor? bias, Tensor y)
    {
        plan.SetRows(rows);
        if (plan.Shape.FusedBias)
        {
            plan.SetBias((ulong)bias!.Data);
        }

        float alpha = 1f, beta = 0f;
        // The tuner timed its algorithm at the bucket's row count; one can refuse another count of the bucket (seen on the
        // H200 for a one-column bf16 GEMM, Qwen2-MoE's shared-expert gate). cuBLASLt's own first choice for exactly these
        // rows then runs it (a host-side query: nothing is queued, so a graph being captured is unaffected).
        Span<CublasLt.HeuristicResult> exact = stackalloc CublasLt.HeuristicResult[1];
        int status;
        for (int attempt = 0; ; attempt++)
        {
            status = CublasLt.cublasLtMatmul(_device.CublasLtHandle, plan.Desc, &alpha, (ulong)weight.Data, plan.WeightLayout, (ulong)x.Data, plan.InputLayout,
                &beta, (ulong)y.Data, plan.OutputLayout, (ulong)y.Data, plan.OutputLayout, &algo, _gemmWorkspace, CublasWorkspaceBytes, _device.Stream);
            if (status != CublasLt.CUBLAS_STATUS_NOT_SUPPORTED || attempt > 0 || Heuristics(plan, rows, exact) == 0)
            {
                break;
            }

            algo = exact[0].Algo;
        }

        Cublas.Check(status, "cublasLtMatmul");
    }

    private void CublasGemmEx(Tensor x, int rows, Tensor weight, Tensor y)
    {
        int n = weight.Rows, k = (int)weight.Columns, inType = CudaType(weight.DType);
        float alpha = 1f, beta = 0f;
        Cublas.Check(
            Cublas.cublasGemmEx(_device.CublasHandle, Cublas.CUBLAS_OP_T, Cublas.CUBLAS_OP_N, n, rows, k, &alpha,
                (ulong)weight.Data, inType, k, (ulong)x.Data, inType, k, &beta, (ulong)y.Data, CudaType(y.DType), n,
                Cublas.CUBLAS_COMPUTE_32F, Cublas.CUBLAS_GEMM_DEFAULT),
            "cublasGemmEx");
    }

    /// <summary>
    /// Times every candidate on this weight for each bucket up to <see cref="TunedRowsLimit"/> that the buffers hold
    /// (x and y are scratch here: the caller's GEMM runs after) and keeps the fastest per bucket.
    /// </summary>
    private void Tune(GemmPlan plan, Tensor x, Tensor weight, Tensor? bias, Tensor y)
    {
        using SafeCudaEventHandle start = NewEvent(), end = NewEvent();
        for (int bucket = 1; bucket <= Math.Min(TunedRowsLimit, Math.Min(x.Rows, y.Rows)); bucket *= 2)
        {
            GemmChoice best = default;
            float bestMs = float.MaxValue;
            foreach (GemmChoice candidate in Candidates(plan, x, bucket, weight, y))
            {
                float ms = TimeGemm(plan, candidate, x, bucket, weight, bias, y, TuneRepeats, start, end);
                if (ms < bestMs)
                {
                    (best, bestMs) = (candidate, ms);
                }
            }

            plan.Choices[bucket] = best;
        }
    }

    /// <summary>What the tuner times at <paramref name="rows"/> rows: cuBLASLt's candidates first, then the others that fit.</summary>
    private List<GemmChoice> Candidates(GemmPlan plan, Tensor x, int rows, Tensor weight, Tensor y)
    {
        Span<CublasLt.HeuristicResult> results = stackalloc CublasLt.HeuristicResult[HeuristicCandidates];
        int count = Heuristics(plan, RowBucket(rows), results);
        var candidates = new List<GemmChoice>(HeuristicCandidates + 2);
        for (int i = 0; i < count; i++)
        {
            candidates.Add(new GemmChoice(GemmKernel.CublasLt, results[i].Algo, i));
        }

        if (plan.Shape.Scaling != Fp8Scaling.None)
        {
            if (rows <= SkinnyFp8Rows && y.DType == ActivationDType)
            {
                candidates.Add(new GemmChoice(GemmKernel.SkinnyFp8, Warps: 4));
                candidates.Add(new GemmChoice(GemmKernel.SkinnyFp8, Warps: 8));
            }

            return candidates.Count > 0 ? candidates : throw NoFp8Gemm(plan, rows);
        }

        candidates.Add(new GemmChoice(GemmKernel.CublasGemmEx));
        if (SkinnyGemmFits(x, rows, weight, y))
        {
            candidates.Add(new GemmChoice(GemmKernel.Skinny));
        }

        return candidates;
    }

    /// <summary>
    /// Milliseconds per GEMM over <paramref name="repeats"/> back-to-back launches, after one untimed launch. An FP8
    /// layer's time includes its input quantization, so the comparison is of whole layers.
    /// </summary>
    private float TimeGemm(GemmPlan plan, GemmChoice candidate, Tensor x, int rows, Tensor weight, Tensor? bias, Tensor y, int repeats,
        SafeCudaEventHandle start, SafeCudaEventHandle end)
    {
        bool quantize = plan.Shape.Scaling != Fp8Scaling.None && _fp8Layer is not null;
        void Run()
        {
            if (quantize)
            {
                QuantizeFp8Input(x, rows);
            }

            RunGemm(plan, candidate, x, rows, weight, bias, y);
        }

        return TimeRepeated(Run, repeats, start, end);
    }

    /// <summary>Milliseconds per call of <paramref name="run"/> over <paramref name="repeats"/> back-to-back calls, after one untimed (a first launch loads code).</summary>
    private float TimeRepeated(Action run, int repeats, SafeCudaEventHandle start, SafeCudaEventHandle end)
    {
        run();
        CudaDriver.Check(CudaDriver.cuEventRecord(start.DangerousGetHandle(), _device.Stream), "cuEventRecord");
        for (int i = 0; i < repeats; i++)
        {
            run();
        }

        CudaDriver.Check(CudaDriver.cuEventRecord(end.DangerousGetHandle(), _device.Stream), "cuEventRecord");
        CudaDriver.Check(CudaDriver.cuEventSynchronize(end.DangerousGetHandle()), "cuEventSynchronize");
        return Elapsed(start, end) / repeats;
    }

    /// <summary>
    /// Every kernel the tuner would time for this GEMM at <paramref name="rows"/> rows, each timed over
    /// <paramref name="repeats"/> back-to-back launches (<c>celer bench gemm</c>), with the label of <see cref="Label"/>.
    /// An FP8 <paramref name="weight"/> needs its layer's <paramref name="activations"/>; each kernel's time then includes
    /// the input quantization, as the tuner times it.
    /// </summary>
    public IReadOnlyList<(string Kernel, double Seconds)> TimeGemmKernels(Tensor x, int rows, Tensor weight, Tensor? bias, Tensor y, int repeats,
        ActivationQuantization? activations = null)
    {
        if ((weight.DType == DType.F8E4M3) != (activations is not null))
        {
            throw new ArgumentException($"'{weight.Name}' is {weight.DType}: an FP8 weight's GEMM, and only it, takes its input quantization.");
        }

        Tensor input = activations is null ? x : Fp8Input(x.Rows, (int)weight.Columns);
        _fp8Layer = activations is null ? null : (x, activations);
        try
        {
            GemmPlan plan = Plan(input, weight, bias, y);
            using SafeCudaEventHandle start = NewEvent(), end = NewEvent();
            return [.. Candidates(plan, input, rows, weight, y).Select(c => (Label(c), TimeGemm(plan, c, input, rows, weight, bias, y, repeats, start, end) / 1e3))];
        }
        finally
        {
            _fp8Layer = null;
        }
    }

    /// <summary>
    /// The timed choices, for the startup log: per weight shape and row bucket up to <see cref="TunedRowsLimit"/>, the
    /// kernel that won (<see cref="Label"/>), and the W4A16 layers' (<see cref="Int4Choice.ToString"/>).
    /// </summary>
    public IReadOnlyDictionary<(int N, int K, int Bucket, DType Output), string> TunedGemmChoices =>
        _gemmPlans.SelectMany(p => p.Value.Choices.Where(c => c.Key <= TunedRowsLimit)
                .Select(c => (Key: (p.Key.N, p.Key.K, c.Key, p.Key.Output), Value: Label(c.Value))))
            .Concat(_int4Choices.Where(c => c.Key.Bucket <= TunedRowsLimit)
                .Select(c => (Key: (c.Key.N, c.Key.K, c.Key.Bucket, c.Key.Output), Value: c.Value.ToString())))
            .GroupBy(e => e.Key)
            .ToDictionary(g => g.Key, g => g.First().Value);

    /// <summary>"skinny", "skinny fp8 4w" (or 8w: warps per block), "cublasLt #rank" or "cublasGemmEx".</summary>
    private static string Label(GemmChoice choice) => choice switch
    {
        { Kernel: GemmKernel.Skinny } => "skinny",
        { Kernel: GemmKernel.SkinnyFp8 } => $"skinny fp8 {choice.Warps}w",
        { Kernel: GemmKernel.CublasGemmEx } => "cublasGemmEx",
        _ => $"cublasLt #{choice.Candidate + 1}",
    };

    /// <summary>How many cuBLASLt candidates a GEMM of this shape has at <paramref name="rows"/> rows (tests).</summary>
    internal int LtCandidateCount(Tensor x, int rows, Tensor weight, Tensor? bias, Tensor y)
    {
        Span<CublasLt.HeuristicResult> results = stackalloc CublasLt.HeuristicResult[HeuristicCandidates];
        return Heuristics(Plan(x, weight, bias, y), RowBucket(rows), results);
    }

    private void DisposeGemmPlans()
    {
        foreach (GemmPlan plan in _gemmPlans.Values)
        {
            plan.Dispose();
        }

        _gemmPlans.Clear();
    }

    /// <summary>
    /// cuBLASLt's descriptors of one weight shape: the operation (transposes, epilogue), the three matrix layouts and the
    /// heuristic's preferences. The rows change from step to step; they are set on the input and output layouts per call
    /// (a host-side write, no allocation).
    /// </summary>
    private sealed class GemmPlan : IDisposable
    {
        private ulong _rows;

        public GemmPlan(GemmShape shape, int inType, int outType, long workspaceBytes)
        {
            Shape = shape;
            Cublas.Check(CublasLt.cublasLtMatmulDescCreate(out nint desc, Cublas.CUBLAS_COMPUTE_32F, Cublas.CUDA_R_32F), "cublasLtMatmulDescCreate");
            Desc = desc;
            int transpose = Cublas.CUBLAS_OP_T, none = Cublas.CUBLAS_OP_N;
            SetDesc(CublasLt.CUBLASLT_MATMUL_DESC_TRANSA, &transpose, sizeof(int));
            SetDesc(CublasLt.CUBLASLT_MATMUL_DESC_TRANSB, &none, sizeof(int));
            if (shape.FusedBias)
            {
                int epilogue = CublasLt.CUBLASLT_EPILOGUE_BIAS;
                SetDesc(CublasLt.CUBLASLT_MATMUL_DESC_EPILOGUE, &epilogue, sizeof(int));
            }

            if (shape.Scaling != Fp8Scaling.None)
            {
                // The weight (A) is scaled per output row or per 128 x 128 block, the input (B) per row or per row's group
                // of 128 (its scales [group, row], the rows contiguous), both in fp32 (cublasLtMatmulMatrixScale_t).
                int a = shape.Scaling == Fp8Scaling.Rows ? CublasLt.CUBLASLT_MATMUL_MATRIX_SCALE_OUTER_VEC_32F : CublasLt.CUBLASLT_MATMUL_MATRIX_SCALE_BLK128x128_32F;
                int b = shape.Scaling == Fp8Scaling.Rows ? CublasLt.CUBLASLT_MATMUL_MATRIX_SCALE_OUTER_VEC_32F : CublasLt.CUBLASLT_MATMUL_MATRIX_SCALE_VEC128_32F;
                SetDesc(CublasLt.CUBLASLT_MATMUL_DESC_A_SCALE_MODE, &a, sizeof(int));
                SetDesc(CublasLt.CUBLASLT_MATMUL_DESC_B_SCALE_MODE, &b, sizeof(int));
            }

            _rows = 1;
            Cublas.Check(CublasLt.cublasLtMatrixLayoutCreate(out nint w, inType, (ulong)shape.K, (ulong)shape.N, shape.K), "cublasLtMatrixLayoutCreate");
            WeightLayout = w;
            Cublas.Check(CublasLt.cublasLtMatrixLayoutCreate(out nint x, inType, (ulong)shape.K, _rows, shape.K), "cublasLtMatrixLayoutCreate");
            InputLayout = x;
            Cublas.Check(CublasLt.cublasLtMatrixLayoutCreate(out nint y, outType, (ulong)shape.N, _rows, shape.N), "cublasLtMatrixLayoutCreate");
            OutputLayout = y;

            Cublas.Check(CublasLt.cublasLtMatmulPreferenceCreate(out nint preference), "cublasLtMatmulPreferenceCreate");
            Preference = preference;
            ulong workspace = (ulong)workspaceBytes;
            Cublas.Check(CublasLt.cublasLtMatmulPreferenceSetAttribute(preference, CublasLt.CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &workspace, sizeof(ulong)),
                "cublasLtMatmulPreferenceSetAttribute");
            uint alignment = (uint)shape.Alignment;
            for (int matrix = 0; matrix < 4; matrix++)   // A, B, C, D
            {
                Cublas.Check(
                    CublasLt.cublasLtMatmulPreferenceSetAttribute(preference, CublasLt.CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES + matrix, &alignment, sizeof(uint)),
                    "cublasLtMatmulPreferenceSetAttribute");
            }
        }

        public GemmShape Shape { get; }

        public nint Desc { get; }

        public nint WeightLayout { get; }

        public nint InputLayout { get; }

        public nint OutputLayout { get; }

        public nint Preference { get; }

        /// <summary>The chosen kernel per row bucket.</summary>
        public Dictionary<int, GemmChoice> Choices { get; } = [];

        public void SetRows(int rows)
        {
            ulong columns = (ulong)rows;
            if (columns == _rows)
            {
                return;
            }

            Cublas.Check(CublasLt.cublasLtMatrixLayoutSetAttribute(InputLayout, CublasLt.CUBLASLT_MATRIX_LAYOUT_COLS, &columns, sizeof(ulong)), "cublasLtMatrixLayoutSetAttribute");
            Cublas.Check(CublasLt.cublasLtMatrixLayoutSetAttribute(OutputLayout, CublasLt.CUBLASLT_MATRIX_LAYOUT_COLS, &columns, sizeof(ulong)), "cublasLtMatrixLayoutSetAttribute");
            _rows = columns;
        }

        public void SetBias(ulong bias) => SetDesc(CublasLt.CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias, sizeof(ulong));

        /// <summary>The device pointers of an FP8 GEMM's scales: the weight's (A) and its quantized input's (B).</summary>
        public void SetScales(ulong weight, ulong input)
        {
            SetDesc(CublasLt.CUBLASLT_MATMUL_DESC_A_SCALE_POINTER, &weight, sizeof(ulong));
            SetDesc(CublasLt.CUBLASLT_MATMUL_DESC_B_SCALE_POINTER, &input, sizeof(ulong));
        }

        private void SetDesc(int attribute, void* value, int bytes) =>
            Cublas.Check(CublasLt.cublasLtMatmulDescSetAttribute(Desc, attribute, value, (nuint)bytes), "cublasLtMatmulDescSetAttribute");

        // A failed destroy leaves nothing to do: the statuses are dropped on purpose.
        public void Dispose()
        {
            _ = CublasLt.cublasLtMatmulPreferenceDestroy(Preference);
            _ = CublasLt.cublasLtMatrixLayoutDestroy(OutputLayout);
            _ = CublasLt.cublasLtMatrixLayoutDestroy(InputLayout);
            _ = CublasLt.cublasLtMatrixLayoutDestroy(WeightLayout);
            _ = CublasLt.cublasLtMatmulDescDestroy(Desc);
        }
    }
}
