using Celer.Backends.Cuda.Interop;
using Celer.Models.Backend;
using Celer.Models.Weights;

namespace Celer.Backends.Cuda;

/// <summary>
/// Paged attention: for 16-bit models the tensor-core kernels, flash_decode.cu for sequences whose query rows with
/// their GQA group fit 16 MMA rows (decodes) and flash_attention.cu for the others (prefill chunks); the CUDA-core
/// kernel (attention.cu) for fp32 models, other head sizes and GQA groups wider than a tile. All split the context
/// of small batches across thread blocks (flash-decoding) and merge the partial results.
/// </summary>
public sealed unsafe partial class CudaBackend
{
    // Matches MAX_GROUP, MAX_PER_LANE × 32 of attention.cu, the split cap and the partial buffers.
    private const int MaxGroup = 8;
    private const int MaxHeadDim = 256;
    private const int MaxSplits = 16;
    private const int MaxSplitRows = 256;

    // The widest GQA group the tensor-core kernels take: a flash_attention tile of head_dim 256 (64 MMA rows) holds
    // four query rows of it.
    private const int MaxFlashGroup = 16;
    private static readonly int[] FlashHeadDims = [16, 32, 64, 80, 96, 128, 256];
    private const int FlashThreads = 128;

    // Matches DECODE_ROWS of flash_decode.cu: MMA rows of a decode tile.
    private const int DecodeRows = 16;

#pragma warning disable CA2213 // Track/Grow put it in _allocations, which Dispose disposes
    private SafeDeviceMemoryHandle? _splitAcc, _splitMl;
#pragma warning restore CA2213
    private int _flashTileCount, _decodeTileCount;
    private int[] _tiles = [];

    // The tensor-core kernels for this model's head size and cache type, resolved with the KV cache.
    private nint _flashKernel, _decodeKernel;
    private int _flashSharedBytes, _decodeSharedBytes;

    // MMA rows (query row × head of one GQA group) of a flash_attention tile for this model's head size
    // (flash_attention_block_m), read with the kernel.
    private int _flashBlockM;

    public void Attention(int layer, Tensor q, Tensor output, AttentionSpec spec, Tensor? sinks = null)
    {
        if (sinks is not null && (sinks.ElementCount != spec.NumHeads || sinks.DType != ActivationDType))
        {
            throw new ArgumentException($"Attention sinks {sinks} must be one value per head ({spec.NumHeads}) in {ActivationDType}.", nameof(sinks));
        }

        ForwardBatch batch = Batch;
        int rows = batch.NumTokens;
        EnsureSplitBuffers(spec);
        // Bidirectional (an encoder's): the same kernels over each row's first and last keys (see MaskPositions).
        (ulong pp, ulong kl) = spec.Causal ? (_positions.Pointer, 0UL) : MaskPositions(batch, spec);
        ulong qp = (ulong)q.Data, kc = _kCache[layer], vc = _vCache[layer], bt = _blockTables.Pointer, o = (ulong)output.Data;
        ulong pa = _splitAcc!.Pointer, pm = _splitMl!.Pointer;
        int maxBlocks = batch.MaxBlocksPerSeq, blockSize = _blockSize, heads = spec.NumHeads, kvHeads = spec.NumKvHeads, hd = spec.HeadDim, window = spec.SlidingWindow;
        float scale = spec.Scale, kScale = _kScales[layer], vScale = _vScales[layer], softCap = spec.LogitSoftCap;
        ulong sp = sinks is null ? 0 : (ulong)sinks.Data;   // the kernels take nullptr for a layer without sinks
        int splits;
        if (UsesFlashAttention(spec))
        {
            // Both kernels write the same partial layout, so one merge serves them: they share the split count.
            splits = SplitsFor(rows, (_flashTileCount + _decodeTileCount) * kvHeads);
            ulong tp = _attentionTiles.Pointer;
            void** args = stackalloc void*[] { &qp, &kc, &vc, &tp, &pp, &bt, &maxBlocks, &blockSize, &heads, &kvHeads, &scale, &window, &o, &pa, &pm, &kScale, &vScale, &softCap, &sp, &kl };
            if (_flashTileCount > 0)
            {
                _kernels.Launch(_flashKernel, "flash_attention", (uint)_flashTileCount, (uint)kvHeads, (uint)splits, FlashThreads, args, (uint)_flashSharedBytes);
            }

            if (_decodeTileCount > 0)
            {
                tp += (ulong)(_flashTileCount * 3 * sizeof(int));   // the decode tiles follow the prefill tiles
                _kernels.Launch(_decodeKernel, "flash_decode", (uint)_decodeTileCount, (uint)kvHeads, (uint)splits, FlashThreads, args, (uint)_decodeSharedBytes);
            }
        }
        else
        {
            int groupChunks = (heads / kvHeads + MaxGroup - 1) / MaxGroup;
            splits = SplitsFor(rows, kvHeads * groupChunks);
            ulong ts = _tokenSeq.Pointer;
            void** args = stackalloc void*[] { &qp, &kc, &vc, &pp, &ts, &bt, &maxBlocks, &blockSize, &heads, &kvHeads, &hd, &scale, &window, &o, &pa, &pm, &kScale, &vScale, &softCap, &sp, &kl };
            // 128 threads = the kernel's four warps (WARPS in attention.cu).
            LaunchKv("paged_attention", (uint)rows, (uint)(kvHeads * groupChunks), (uint)splits, 128, args);
        }

        if (splits > 1)
        {
            void** margs = stackalloc void*[] { &pa, &pm, &heads, &hd, &splits, &o, &sp };
            Launch("merge_splits", (uint)rows, (uint)heads, Threads(hd), margs);
        }
    }

    /// <summary>
    /// The tensor-core kernels take 16-bit models whose head size they were built for and GQA groups that fit a tile,
    /// on sm_80 and later (they are not compiled for older cards).
    /// </summary>
    private bool UsesFlashAttention(AttentionSpec spec) =>
        ActivationDType != DType.F32 && _device.ComputeCapability.Major >= 8
        && Array.IndexOf(FlashHeadDims, spec.HeadDim) >= 0 && spec.NumHeads / spec.NumKvHeads <= MaxFlashGroup;

    /// <summary>
    /// The tensor-core kernels' work list for this step, uploaded once for every layer: tiles (sequence, first row,
    /// rows) of consecutive query rows of one sequence. A sequence whose rows with their GQA group of query heads fit
    /// DecodeRows is one flash_decode tile; the others are cut into flash_attention tiles of as many rows as fit
    /// a flash_attention tile's MMA rows. The prefill tiles come first, then the decode tiles.
    /// </summary>
    private void UploadFlashTiles(ForwardBatch batch, AttentionSpec spec)
    {
        int group = spec.NumHeads / spec.NumKvHeads, perTile = _flashBlockM / group;
        int capacity = 3 * (batch.NumSequences + batch.NumTokens / perTile + 1);
        if (_tiles.Length < capacity)
        {
            _tiles = new int[Math.Max(capacity, 2 * _tiles.Length)];
        }

        int count = 0;
        _flashTileCount = _decodeTileCount = 0;
        foreach (bool decode in (ReadOnlySpan<bool>)[false, true])
        {
            for (int s = 0; s < batch.NumSequences; s++)
            {
                int start = batch.QueryStartLoc[s], end = batch.QueryStartLoc[s + 1];
                bool fitsDecode = _decodeKernel != 0 && (end - start) * group <= DecodeRows;
                if (fitsDecode != decode)
                {
                    continue;
                }

                for (int r = start; r < end; r += decode ? end - start : perTile)
                {
                    _tiles[count++] = s;
                    _tiles[count++] = r;
                    _tiles[count++] = Math.Min(decode ? end - start : perTile, end - r);
                    if (decode)
                    {
                        _decodeTileCount++;
                    }
                    else
                    {
                        _flashTileCount++;
                    }
                }
            }
        }

        _attentionTiles.Upload(_tiles.AsSpan(0, count));
    }

    /// <summary>
    /// Splits the context of small batches across more thread blocks (flash-decoding) so the card fills: at least
    /// one block per multiprocessor. Not more: a block's time is mostly the latency of its chain of dependent loads
    /// (tile, position, block table, keys), so a second wave of blocks costs a whole block time and the merge another
    /// kernel (measured on the H200 at batch 32: two splits took 19 µs per layer plus 5 µs of merge). Depends only
    /// on the batch's shape, so a recorded decode graph stays valid.
    /// </summary>
    private int SplitsFor(int rows, int blocksPerSplit)
    {
        if (rows > MaxSplitRows)
        {
            return 1;
        }

        int wanted = (_device.MultiprocessorCount + blocksPerSplit - 1) / blocksPerSplit;
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
