using Celer.Backends.Cuda.Interop;
using Celer.Models.Backend;
using Celer.Models.Weights;

namespace Celer.Backends.Cuda;

/// <summary>
/// Paged attention: the tensor-core kernel (flash_attention.cu) for 16-bit models, the CUDA-core kernel
/// (attention.cu) for fp32 models, other head sizes and GQA groups wider than a tile. Both split the context
/// of small batches across thread blocks (flash-decoding) and merge the partial results.
/// </summary>
public sealed unsafe partial class CudaBackend
{
    // Matches MAX_GROUP, MAX_PER_LANE × 32 of attention.cu, the split cap and the partial buffers.
    private const int MaxGroup = 8;
    private const int MaxHeadDim = 256;
    private const int MaxSplits = 16;
    private const int MaxSplitRows = 256;

    // Matches FLASH_BLOCK_M of flash_attention.cu: query rows (token × head of one GQA group) per tile.
    private const int FlashBlockM = 64;
    private static readonly int[] FlashHeadDims = [16, 32, 64, 80, 96, 128, 256];
    private const int FlashThreads = 128;

    private SafeDeviceMemoryHandle? _splitAcc, _splitMl;
    private int _flashTileCount;

    // The tensor-core kernel for this model's head size and cache type, resolved with the KV cache.
    private nint _flashKernel;

    public void Attention(int layer, Tensor q, Tensor output, AttentionSpec spec)
    {
        ForwardBatch batch = Batch;
        int rows = batch.NumTokens;
        EnsureSplitBuffers(spec);
        ulong qp = (ulong)q.Data, kc = _kCache[layer], vc = _vCache[layer], pp = _positions.Pointer, bt = _blockTables.Pointer, o = (ulong)output.Data;
        ulong pa = _splitAcc!.Pointer, pm = _splitMl!.Pointer;
        int maxBlocks = batch.MaxBlocksPerSeq, blockSize = _blockSize, heads = spec.NumHeads, kvHeads = spec.NumKvHeads, hd = spec.HeadDim, window = spec.SlidingWindow;
        float scale = spec.Scale, kScale = _kScales[layer], vScale = _vScales[layer];
        int splits;
        if (UsesFlashAttention(spec))
        {
            int tiles = _flashTileCount;
            splits = SplitsFor(rows, tiles * kvHeads);
            ulong tp = _attentionTiles.Pointer;
            void** args = stackalloc void*[] { &qp, &kc, &vc, &tp, &pp, &bt, &maxBlocks, &blockSize, &heads, &kvHeads, &scale, &window, &o, &pa, &pm, &kScale, &vScale };
            _kernels.Launch(_flashKernel, "flash_attention", (uint)tiles, (uint)kvHeads, (uint)splits, FlashThreads, args);
        }
        else
        {
            int groupChunks = (heads / kvHeads + MaxGroup - 1) / MaxGroup;
            splits = SplitsFor(rows, kvHeads * groupChunks);
            ulong ts = _tokenSeq.Pointer;
            void** args = stackalloc void*[] { &qp, &kc, &vc, &pp, &ts, &bt, &maxBlocks, &blockSize, &heads, &kvHeads, &hd, &scale, &window, &o, &pa, &pm, &kScale, &vScale };
            // 128 threads = the kernel's four warps (WARPS in attention.cu).
            LaunchKv("paged_attention", (uint)rows, (uint)(kvHeads * groupChunks), (uint)splits, 128, args);
        }

        if (splits > 1)
        {
            void** margs = stackalloc void*[] { &pa, &pm, &heads, &hd, &splits, &o };
            Launch("merge_splits", (uint)rows, (uint)heads, Threads(hd), margs);
        }
    }

    /// <summary>The tensor-core kernel takes 16-bit models whose head size it was built for and GQA groups that fit a tile.</summary>
    private bool UsesFlashAttention(AttentionSpec spec) =>
        ActivationDType != DType.F32 && Array.IndexOf(FlashHeadDims, spec.HeadDim) >= 0 && spec.NumHeads / spec.NumKvHeads <= FlashBlockM / 4;

    /// <summary>
    /// The flash kernel's work list for this step, uploaded once for every layer: each tile is (sequence, first row,
    /// rows) of consecutive query rows of one sequence, as many tokens as fit FlashBlockM rows once each brings its
    /// GQA group of query heads.
    /// </summary>
    private void UploadFlashTiles(ForwardBatch batch, AttentionSpec spec)
    {
        int perTile = FlashBlockM / (spec.NumHeads / spec.NumKvHeads);
        var tiles = new List<int>();
        for (int s = 0; s < batch.NumSequences; s++)
        {
            for (int r = batch.QueryStartLoc[s]; r < batch.QueryStartLoc[s + 1]; r += perTile)
            {
                tiles.AddRange([s, r, Math.Min(perTile, batch.QueryStartLoc[s + 1] - r)]);
            }
        }

        _flashTileCount = tiles.Count / 3;
        _attentionTiles.Upload([.. tiles]);
    }

    /// <summary>
    /// Splits the context of small batches across more thread blocks (flash-decoding) so the card fills: about
    /// two blocks per multiprocessor. Depends only on the batch's shape, so a recorded decode graph stays valid.
    /// </summary>
    private int SplitsFor(int rows, int blocksPerSplit)
    {
        if (rows > MaxSplitRows)
        {
            return 1;
        }

        int wanted = (2 * _device.MultiprocessorCount + blocksPerSplit - 1) / blocksPerSplit;
        return Math.Clamp(wanted, 1, MaxSplits);
    }

    /// <summary>Device memory the split attention's partial results take, for the loader's KV-cache budget.</summary>
    public static long SplitAttentionBytes(int numHeads, int headDim) => (long)MaxSplitRows * numHeads * MaxSplits * (headDim + 2) * sizeof(float);

    /// <summary>Partial results of split attention, sized once for the largest split batch (before any graph is recorded).</summary>
    private void EnsureSplitBuffers(AttentionSpec spec)
    {
        if (_splitAcc is not null)
        {
            return;
        }

        long partials = (long)MaxSplitRows * spec.NumHeads * MaxSplits;
        _splitAcc = Track(_device.Allocate(partials * spec.HeadDim * sizeof(float)));
        _splitMl = Track(_device.Allocate(partials * 2 * sizeof(float)));
    }
}
