using Celer.Backends.Cuda.Interop;
using Celer.Models.Backend;
using Celer.Models.Weights;

namespace Celer.Backends.Cuda;

/// <summary>
/// <c>stream_gemm.cu</c>: the weight-streaming tensor-core GEMM of decode steps of up to 64 rows (16-bit models, sm_80+),
/// W through a cp.async pipeline whose first stages are requested before the wait for the previous kernel, k optionally
/// split over several blocks per column tile with the sum done by the last block of each tile. The tile (columns × k
/// step, the kernel's compiled configurations) and the split count are what make it fit a shape (enough blocks in
/// flight for a 4096-column weight, no partial sums for a 128k-column lm_head), so CudaBackend.Gemm.cs times each
/// combination beside cuBLASLt and the skinny kernels and keeps what is fastest per weight shape and row bucket.
/// </summary>
public sealed unsafe partial class CudaBackend
{
    private const int StreamThreads = 128;
    private const int StreamMaxRows = 64;
    private const int StreamPartialBytes = 16 << 20;   // fp32 partial tiles of one split GEMM
    private const int StreamMaxSplitTiles = 4096;      // column tiles a split GEMM may have (one counter each)
    private static readonly int[] StreamSplitCounts = [1, 2, 4, 8, 16];

    // CELER_CUDA_STREAM_GEMM=0 leaves the kernel out of the tuner's candidates, =only makes its configurations the only
    // candidates where one fits (to measure what it gives in a whole step, where its early weight loads overlap the
    // kernel before it, which the tuner's back-to-back timing of one GEMM cannot see).
    private static readonly string? StreamGemmMode = Environment.GetEnvironmentVariable("CELER_CUDA_STREAM_GEMM");
    private static readonly bool StreamGemmDisabled = StreamGemmMode == "0";
    private static readonly bool StreamGemmOnly = StreamGemmMode == "only";

    private readonly Dictionary<(int Columns, int KStep, int Rows, bool F32), nint> _streamKernels = [];
    private (int Columns, int KStep)[] _streamTiles = [];      // the compiled tiles that fit this card's shared memory
    private readonly Dictionary<(int Columns, int KStep), int[]> _streamSharedBytes = [];   // per row bucket 16, 32, 64
    private ulong _streamPartial, _streamCounters;

    /// <summary>The streaming kernel's configuration in <see cref="GemmPolicy.Stream"/> (tests).</summary>
    internal StreamGemmConfig StreamConfig { get; set; } = new(64, 64, 1);

    /// <summary>Output columns per block, k per pipeline stage (a compiled tile) and the blocks k is split over.</summary>
    internal readonly record struct StreamGemmConfig(int Columns, int KStep, int Splits)
    {
        public override string ToString() => $"stream/n{Columns}k{KStep}/s{Splits}";
    }

    /// <summary>Every configuration the tuner times.</summary>
    private IEnumerable<StreamGemmConfig> StreamConfigs =>
        _streamTiles.SelectMany(tile => StreamSplitCounts.Select(splits => new StreamGemmConfig(tile.Columns, tile.KStep, splits)));

    /// <summary>
    /// The kernel's tiles that fit this card's shared memory, its partial-sum scratch and zeroed tile counters, where it
    /// can run (at construction, so that the KV cache's sizing counts the scratch).
    /// </summary>
    private void InitStreamGemm()
    {
        if (StreamGemmDisabled || ActivationDType == DType.F32 || _device.ComputeCapability.Major < 8)
        {
            return;
        }

        int[] configs = _kernels.ReadInts("stream_gemm_configs"), sharedBytes = _kernels.ReadInts("stream_gemm_shared_bytes");
        for (int i = 0; i < configs.Length / 2; i++)
        {
            if (sharedBytes[3 * i + 2] <= _device.MaxSharedMemoryPerBlock)   // the 64-row bucket needs the most
            {
                _streamSharedBytes[(configs[2 * i], configs[2 * i + 1])] = sharedBytes[(3 * i)..(3 * i + 3)];
            }
        }

        _streamTiles = [.. _streamSharedBytes.Keys];
        if (_streamTiles.Length == 0)
        {
            return;
        }

        _streamPartial = Track(_device.Allocate(StreamPartialBytes)).Pointer;
        _streamCounters = Track(_device.Allocate(StreamMaxSplitTiles * sizeof(int))).Pointer;
        CudaDriver.Check(CudaDriver.cuMemsetD32Async(_streamCounters, 0, StreamMaxSplitTiles, _device.Stream), "cuMemsetD32Async");
    }

    /// <summary>Row bucket of the kernel (16, 32 or 64 rows).</summary>
    private static int StreamRows(int rows) => rows <= 16 ? 16 : rows <= 32 ? 32 : 64;

    /// <summary>
    /// 16-byte aligned rows of the model dtype in, the model dtype or fp32 out, k in whole pipeline stages, and for a
    /// split k the partial tiles within the scratch, each split with at least one stage of k.
    /// </summary>
    private bool StreamGemmFits(Tensor x, int rows, Tensor weight, Tensor y, StreamGemmConfig config)
    {
        if (_streamTiles.Length == 0 || rows > StreamMaxRows || x.DType != ActivationDType || weight.DType != ActivationDType
            || (y.DType != ActivationDType && y.DType != DType.F32) || x.Data % 16 != 0 || weight.Data % 16 != 0
            || weight.Columns % config.KStep != 0 || !_streamTiles.Contains((config.Columns, config.KStep)))
        {
            return false;
        }

        long tiles = (weight.Rows + config.Columns - 1) / config.Columns;
        return config.Splits == 1 || (tiles <= StreamMaxSplitTiles && weight.Columns / config.KStep >= config.Splits
            && config.Splits * tiles * StreamRows(rows) * config.Columns * sizeof(float) <= StreamPartialBytes);
    }

    /// <summary>y = x·Wᵀ (+ bias, of y's dtype, or null).</summary>
    private void StreamGemm(Tensor x, int rows, Tensor weight, Tensor? bias, Tensor y, StreamGemmConfig config)
    {
        int mr = StreamRows(rows);
        bool f32 = y.DType == DType.F32;
        int sharedBytes = _streamSharedBytes[(config.Columns, config.KStep)][mr / 32];
        if (!_streamKernels.TryGetValue((config.Columns, config.KStep, mr, f32), out nint function))
        {
            function = _kernels.Function($"stream_gemm_{_suffix}_m{mr}_n{config.Columns}_k{config.KStep}{(f32 ? "_f32" : "")}");
            _kernels.AllowSharedMemory(function, sharedBytes);
            _streamKernels[(config.Columns, config.KStep, mr, f32)] = function;
        }

        ulong xp = (ulong)x.Data, wp = (ulong)weight.Data, bp = bias is null ? 0 : (ulong)bias.Data, yp = (ulong)y.Data;
        ulong partial = _streamPartial, counters = _streamCounters;
        int n = weight.Rows, k = (int)weight.Columns;
        void** args = stackalloc void*[] { &xp, &rows, &wp, &n, &k, &bp, &yp, &partial, &counters };
        uint tiles = (uint)((n + config.Columns - 1) / config.Columns);
        _kernels.Launch(function, "stream_gemm", tiles, (uint)config.Splits, 1, StreamThreads, args, (uint)sharedBytes);
    }
}
