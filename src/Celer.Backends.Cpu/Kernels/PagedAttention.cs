using System.Numerics.Tensors;
using Celer.Models.Weights;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Celer.Backends.Cpu.Kernels;

/// <summary>
/// Variable-length causal attention over a flat batch whose keys and values live in the paged KV cache
/// (the new tokens' K/V already written). Sequence s owns query rows queryStartLoc[s]..queryStartLoc[s+1]−1
/// and has seqLens[s] tokens in all, so its query row j sits at position seqLens[s] − queryLen + j and
/// attends to positions 0..that position; with a sliding window W > 0 only to positions &gt; position − W
/// (transformers' <c>sliding_window_overlay</c>: the last W positions, itself included); bidirectional attention
/// (an encoder's, <c>causal</c> false) lets every row see all seqLens[s] positions, or with a window W those less than W
/// away on either side (EmbeddingGemma's), and needs the whole sequence in the step. Head h reads kv
/// head h / (numHeads / numKvHeads) (GQA). Softmax is fp32 with the streaming (online) max, one KV block
/// at a time, so no score row of full context length is ever stored.
/// <para>
/// Work items are (sequence, kv head, tile of up to <see cref="QueryTile"/> query rows): every query head of
/// the kv head's group and every row of the tile is processed against one KV block while it is in L1, so a
/// decode step reads each block once per kv head, and a prefill reuses it for QueryTile × group rows.
/// Decode rows (query length 1) take the streaming path of PagedAttention.Decode.cs instead, which also splits
/// a long context over cores when the batch has fewer (sequence, kv head) items than there are cores.
/// </para>
/// </summary>
public static unsafe partial class PagedAttention
{
    /// <summary>Query rows per work item: 16 rows × a group of up to 8 heads × 128 dims of running output is 64 KiB.</summary>
    private const int QueryTile = 16;

    /// <summary>
    /// A causal run of at most this many query rows (a speculative verify step's draft rows, a short prompt chunk) is
    /// attended row by row with the decode kernel, each row a work item over its own context: the tile path's per-score
    /// loop made a 4-row verify step of the default model spend 75 µs per layer against 13 µs for one row.
    /// </summary>
    private const int RowByRowMaxRows = 8;

    /// <summary>Score-times-dimension work per task (about 50 µs on one core).</summary>
    private const long MinWorkPerTask = 256 * 1024;

    public static void Run(
        float* q, int numTokens, int numHeads, int numKvHeads, int headDim,
        float* kCache, float* vCache, int blockSize,
        int* blockTables, int blockTableStride,
        int* queryStartLoc, int* seqLens, int numSeqs,
        float scale, int slidingWindow, float* output, float logitSoftCap = 0f, float* sinks = null, bool causal = true) =>
        Run(q, numTokens, numHeads, numKvHeads, headDim, kCache, vCache, KvCacheFormat.F32, blockSize, blockTables, blockTableStride,
            queryStartLoc, seqLens, numSeqs, scale, slidingWindow, output, logitSoftCap, sinks, causal);

    /// <summary>
    /// <see cref="Run(float*, int, int, int, int, float*, float*, int, int*, int, int*, int*, int, float, int, float*, float, float*, bool)"/>
    /// over a cache in <paramref name="cache"/>'s format: an FP8 cache's rows are decoded block by block, one kv head
    /// at a time, into fp32 scratch (times the layer's scale) and attended as the fp32 cache's rows are.
    /// </summary>
    /// <param name="sinks">gpt-oss's attention sinks, one logit per head (null: none): each head's softmax starts
    /// from the sink's term e^sink in its denominator (max = sink, sum = 1), so it is counted once and no value goes with it.</param>
    public static void Run(
        float* q, int numTokens, int numHeads, int numKvHeads, int headDim,
        void* kCache, void* vCache, KvCacheFormat cache, int blockSize,
        int* blockTables, int blockTableStride,
        int* queryStartLoc, int* seqLens, int numSeqs,
        float scale, int slidingWindow, float* output, float logitSoftCap = 0f, float* sinks = null, bool causal = true)
    {
        Validate(numTokens, numHeads, numKvHeads, headDim, blockSize, queryStartLoc, seqLens, numSeqs);
        ValidateBidirectional(causal, queryStartLoc, seqLens, numSeqs);
        if (numTokens == 0 || numHeads == 0)
        {
            return;
        }

        // Work items are numbered sequence by sequence; tileStart[s] is the first tile of sequence s. A prefill
        // tile is up to QueryTile query rows; a decode row's tiles are partitions of its context (split-K).
        // A batch holds at most max_num_seqs sequences (hundreds), so the table normally lives on the stack.
        Span<int> tileStart = numSeqs < 1024 ? stackalloc int[numSeqs + 1] : new int[numSeqs + 1];
        int decodeItems = 0;
        for (int s = 0; s < numSeqs; s++)
        {
            decodeItems += queryStartLoc[s + 1] - queryStartLoc[s] == 1 ? numKvHeads : 0;
        }

        long work = 0;
        bool split = false, rowByRow = false;
        tileStart[0] = 0;
        for (int s = 0; s < numSeqs; s++)
        {
            int queryLen = queryStartLoc[s + 1] - queryStartLoc[s];
            int tiles = queryLen == 1
                ? DecodePartitions(seqLens[s] - 1, slidingWindow, blockSize, decodeItems)
                : RowByRow(queryLen, causal) ? queryLen
                : (queryLen + QueryTile - 1) / QueryTile;
            split |= queryLen == 1 && tiles > 1;
            rowByRow |= queryLen > 1 && RowByRow(queryLen, causal);
            tileStart[s + 1] = tileStart[s] + tiles;
            work += (long)queryLen * seqLens[s] * numHeads * headDim;
        }

        int items = tileStart[numSeqs] * numKvHeads;
        int chunks = KernelScheduling.ChunkCount(work, MinWorkPerTask, items);
        if (split || rowByRow)
        {
            // Partitions must run side by side, whatever the work estimate says; so must rows attended one by one, each a
            // decode row's latency.
            chunks = Math.Max(chunks, Math.Min(items, Environment.ProcessorCount * 2));
        }

        // Partition states of split decode rows, tile-major: numHeads × (max, sum, output) per tile.
        int stateStride = numHeads * (headDim + 2);
        float[]? partitionStates = split ? System.Buffers.ArrayPool<float>.Shared.Rent(tileStart[numSeqs] * stateStride) : null;
        var shape = new Shape(numHeads, numKvHeads, headDim, blockSize, blockTableStride, scale, slidingWindow, logitSoftCap, cache, (nint)sinks, causal);
        int group = numHeads / numKvHeads;
        try
        {
            fixed (int* pinnedTileStart = tileStart)
            fixed (float* pinnedStates = partitionStates)
            {
                var loop = new AttendLoop
                {
                    Shape = shape, Q = q, KCache = kCache, VCache = vCache, BlockTables = blockTables, QueryStartLoc = queryStartLoc,
                    SeqLens = seqLens, Output = output, Tiles = pinnedTileStart, States = pinnedStates, StateStride = stateStride,
                    Items = items, Chunks = chunks,
                };
                KernelScheduling.For(chunks, ref loop);

                for (int s = 0; split && s < numSeqs; s++)
                {
                    int partitions = tileStart[s + 1] - tileStart[s];
                    if (queryStartLoc[s + 1] - queryStartLoc[s] == 1 && partitions > 1)
                    {
                        MergePartitions(pinnedStates + ((long)tileStart[s] * stateStride), partitions, numHeads, headDim, output + ((long)queryStartLoc[s] * numHeads * headDim));
                    }
                }
            }
        }
        finally
        {
            if (partitionStates is not null)
            {
                System.Buffers.ArrayPool<float>.Shared.Return(partitionStates);
            }
        }
    }

    /// <summary>
    /// The plain definition: for each (token, head), all scores, a two-pass softmax in fp32 and the weighted
    /// sum of values, reading K/V through the block table one position at a time.
    /// </summary>
    public static void RunReference(
        float* q, int numTokens, int numHeads, int numKvHeads, int headDim,
        float* kCache, float* vCache, int blockSize,
        int* blockTables, int blockTableStride,
        int* queryStartLoc, int* seqLens, int numSeqs,
        float scale, int slidingWindow, float* output, float logitSoftCap = 0f, float* sinks = null, bool causal = true)
    {
        Validate(numTokens, numHeads, numKvHeads, headDim, blockSize, queryStartLoc, seqLens, numSeqs);
        ValidateBidirectional(causal, queryStartLoc, seqLens, numSeqs);
        int group = numHeads / Math.Max(1, numKvHeads);
        for (int s = 0; s < numSeqs; s++)
        {
            int queryLen = queryStartLoc[s + 1] - queryStartLoc[s];
            var scores = new float[seqLens[s]];
            for (int j = 0; j < queryLen; j++)
            {
                int token = queryStartLoc[s] + j;
                int row = seqLens[s] - queryLen + j;
                int position = LastKey(causal, slidingWindow, row, seqLens[s] - 1);   // the last key the row sees
                int lowest = slidingWindow > 0 ? Math.Max(0, row - slidingWindow + 1) : 0;
                for (int h = 0; h < numHeads; h++)
                {
                    float* query = q + ((((long)token * numHeads) + h) * headDim);
                    float* result = output + ((((long)token * numHeads) + h) * headDim);
                    float max = float.NegativeInfinity;
                    for (int p = lowest; p <= position; p++)
                    {
                        float* key = CacheRow(kCache, blockTables + ((long)s * blockTableStride), blockSize, numKvHeads, headDim, p, h / group);
                        float dot = 0;
                        for (int i = 0; i < headDim; i++)
                        {
                            dot += query[i] * key[i];
                        }

                        scores[p] = dot * scale;
                        if (logitSoftCap > 0)
                        {
                            scores[p] = logitSoftCap * MathF.Tanh(scores[p] / logitSoftCap);
                        }

                        max = MathF.Max(max, scores[p]);
                    }

                    // A sink is one more logit in the softmax, with no value row.
                    max = sinks is null ? max : MathF.Max(max, sinks[h]);
                    float sum = sinks is null ? 0 : MathF.Exp(sinks[h] - max);
                    for (int p = lowest; p <= position; p++)
                    {
                        scores[p] = MathF.Exp(scores[p] - max);
                        sum += scores[p];
                    }

                    for (int i = 0; i < headDim; i++)
                    {
                        float acc = 0;
                        for (int p = lowest; p <= position; p++)
                        {
                            acc += scores[p] * CacheRow(vCache, blockTables + ((long)s * blockTableStride), blockSize, numKvHeads, headDim, p, h / group)[i];
                        }

                        result[i] = acc / sum;
                    }
                }
            }
        }
    }

    /// <summary>
    /// The last key a query row at <paramref name="position"/> sees: its own position (causal), else its sequence's last
    /// key <paramref name="lastKey"/>, or with a window W the last one less than W positions after it.
    /// </summary>
    private static int LastKey(bool causal, int slidingWindow, int position, int lastKey) =>
        causal ? position : slidingWindow > 0 ? Math.Min(lastKey, position + slidingWindow - 1) : lastKey;

    private static float* CacheRow(float* cache, int* blockTable, int blockSize, int numKvHeads, int headDim, int position, int kvHead)
    {
        long slot = ((long)blockTable[position / blockSize] * blockSize) + (position % blockSize);
        return cache + ((((slot * numKvHeads) + kvHead)) * headDim);
    }

    /// <summary>The attention work items of one call, a chunk of them per <see cref="Run(int)"/>.</summary>
    private struct AttendLoop : IChunkLoop
    {
        public Shape Shape;
        public float* Q, Output, States;
        public void* KCache, VCache;
        public int* BlockTables, QueryStartLoc, SeqLens, Tiles;
        public int StateStride, Items, Chunks;

        public readonly void Run(int chunk)
        {
            var (first, last) = KernelScheduling.Range(chunk, Chunks, Items);
            int numKvHeads = Shape.NumKvHeads, numHeads = Shape.NumHeads, headDim = Shape.HeadDim;
            int group = numHeads / numKvHeads;
            int s = 0;
            for (int item = first; item < last; item++)
            {
                int tile = item / numKvHeads;
                int kvHead = item % numKvHeads;
                while (Tiles[s + 1] <= tile)
                {
                    s++;
                }

                int queryStart = QueryStartLoc[s];
                int queryLen = QueryStartLoc[s + 1] - queryStart;
                int* blockTable = BlockTables + ((long)s * Shape.BlockTableStride);
                long heads = ((long)queryStart * numHeads) + (kvHead * group);
                if (queryLen == 1 && Tiles[s + 1] - Tiles[s] == 1)
                {
                    AttendDecodeRow(Shape, Q + (heads * headDim), KCache, VCache, blockTable, SeqLens[s] - 1, kvHead, Output + (heads * headDim));
                }
                else if (queryLen > 1 && RowByRow(queryLen, Shape.Causal))
                {
                    int row = tile - Tiles[s];
                    long rowHeads = heads + ((long)row * numHeads);
                    AttendDecodeRow(Shape, Q + (rowHeads * headDim), KCache, VCache, blockTable, SeqLens[s] - queryLen + row, kvHead, Output + (rowHeads * headDim));
                }
                else if (queryLen == 1)
                {
                    float* state = States + ((long)tile * StateStride) + ((long)kvHead * group * (headDim + 2));
                    AttendDecode(
                        Shape, Q + (heads * headDim), KCache, VCache, blockTable, SeqLens[s] - 1, kvHead,
                        tile - Tiles[s], Tiles[s + 1] - Tiles[s], state, ThreadScratch.Floats((group * Shape.BlockSize) + DecodedBlockFloats(Shape)));
                }
                else
                {
                    int row0 = (tile - Tiles[s]) * QueryTile;
                    AttendTile(
                        Shape, Q, KCache, VCache, blockTable, Output,
                        queryStart + row0, Math.Min(QueryTile, queryLen - row0),
                        firstPosition: SeqLens[s] - queryLen + row0, lastKey: SeqLens[s] - 1, kvHead);
                }
            }
        }
    }

    /// <summary>Whether a sequence's <paramref name="queryLen"/> rows are attended one by one (<see cref="RowByRowMaxRows"/>).</summary>
    private static bool RowByRow(int queryLen, bool causal) => causal && queryLen <= RowByRowMaxRows;

    private readonly record struct Shape(
        int NumHeads, int NumKvHeads, int HeadDim, int BlockSize, int BlockTableStride, float Scale, int SlidingWindow, float LogitSoftCap, KvCacheFormat Cache,
        nint Sinks, bool Causal)
    {
        /// <summary>
        /// The softmax state of query head <paramref name="head"/> before any key: max = its sink and sum = e^0 = 1 when
        /// the layer has sinks (the sink's term, counted once per row), else max = −∞ and sum = 0.
        /// </summary>
        public (float Max, float Sum) InitialState(int head) =>
            Sinks == 0 ? (float.NegativeInfinity, 0f) : (((float*)Sinks)[head], 1f);
    }

    /// <summary>Scratch for one block's decoded key and value rows of one kv head (none for an fp32 cache).</summary>
    private static int DecodedBlockFloats(in Shape shape) => shape.Cache.Type != DType.F32 ? 2 * shape.BlockSize * shape.HeadDim : 0;

    /// <summary>
    /// Rows <paramref name="start"/>… (<paramref name="count"/> of them) of one block's keys and values for the kv head
    /// at <paramref name="blockBase"/> (in elements), as fp32 rows the returned stride apart: the cache itself when it is
    /// fp32, else decoded (and scaled, FP8) into <paramref name="scratch"/> (<see cref="DecodedBlockFloats"/>). Returns the stride.
    /// </summary>
    private static int BlockRows(in Shape shape, void* kCache, void* vCache, long blockBase, int start, int count, float* scratch, out float* keys, out float* values)
    {
        int headDim = shape.HeadDim, kvStride = shape.NumKvHeads * headDim;
        long first = blockBase + ((long)start * kvStride);
        if (shape.Cache.Type == DType.F32)
        {
            keys = (float*)kCache + first;
            values = (float*)vCache + first;
            return kvStride;
        }

        keys = scratch;
        values = scratch + ((long)shape.BlockSize * headDim);
        for (int t = 0; t < count; t++)
        {
            long at = first + ((long)t * kvStride);
            if (shape.Cache.IsFp8)
            {
                Fp8.Decode((byte*)kCache + at, shape.Cache.Type, shape.Cache.KScale, keys + ((long)t * headDim), headDim);
                Fp8.Decode((byte*)vCache + at, shape.Cache.Type, shape.Cache.VScale, values + ((long)t * headDim), headDim);
            }
            else
            {
                Conversions.BF16ToF32((ushort*)kCache + at, keys + ((long)t * headDim), headDim);
                Conversions.BF16ToF32((ushort*)vCache + at, values + ((long)t * headDim), headDim);
            }
        }

        return headDim;
    }

    /// <summary>
    /// Gemma 2's soft-capping of <paramref name="count"/> scaled scores in place: cap · tanh(score / cap), as
    /// transformers' eager attention computes it (divide, tanh, multiply) before the mask and softmax.
    /// </summary>
    private static void SoftCap(float* scores, int count, float cap)
    {
        var span = new Span<float>(scores, count);
        TensorPrimitives.Divide(span, cap, span);
        TensorPrimitives.Tanh(span, span);
        TensorPrimitives.Multiply(span, cap, span);
    }

    /// <summary>
    /// Attention of <paramref name="rows"/> consecutive query rows (positions firstPosition…) of one sequence for
    /// every query head of <paramref name="kvHead"/>'s group, streaming over the KV blocks they can see: up to its own
    /// position, or with bidirectional attention up to the sequence's last key <paramref name="lastKey"/> (with a window, W − 1 past its own).
    /// </summary>
    private static void AttendTile(
        in Shape shape, float* q, void* kCache, void* vCache, int* blockTable, float* output,
        int token0, int rows, int firstPosition, int lastKey, int kvHead)
    {
        int headDim = shape.HeadDim;
        int blockSize = shape.BlockSize;
        int group = shape.NumHeads / shape.NumKvHeads;
        int states = rows * group;
        int kvStride = shape.NumKvHeads * headDim;
        int window = shape.SlidingWindow;

        // Per (row, head) state: running max, running denominator and the unnormalized output row.
        bool transposed = TransposedKeysFit(shape);
        float* scratch = ThreadScratch.Floats((states * (headDim + 2)) + blockSize + DecodedBlockFloats(shape) + (transposed ? (headDim + 1) * blockSize : 0));
        float* runningMax = scratch;
        float* denominator = runningMax + states;
        float* accumulator = denominator + states;
        float* scores = accumulator + (states * headDim);
        float* decoded = scores + blockSize;
        float* keysT = decoded + DecodedBlockFloats(shape);   // the block's keys as [headDim][16], when transposed
        float* blockScores = keysT + (headDim * blockSize);
        for (int i = 0; i < states; i++)
        {
            (runningMax[i], denominator[i]) = shape.InitialState((kvHead * group) + (i % group));
        }

        new Span<float>(accumulator, states * headDim).Clear();

        int lastPosition = LastKey(shape.Causal, window, firstPosition + rows - 1, lastKey);
        int lowest = window > 0 ? Math.Max(0, firstPosition - window + 1) : 0;
        for (int block = lowest / blockSize; block <= lastPosition / blockSize; block++)
        {
            long blockBase = (long)blockTable[block] * blockSize * kvStride + ((long)kvHead * headDim);
            int blockFirst = block * blockSize;
            int inBlock = Math.Min(blockSize, lastPosition - blockFirst + 1);
            int stride = BlockRows(shape, kCache, vCache, blockBase, 0, inBlock, decoded, out float* keys, out float* values);
            if (transposed)
            {
                TransposeKeys(keys, stride, inBlock, headDim, keysT);
            }

            for (int r = 0; r < rows; r++)
            {
                int position = firstPosition + r;
                int from = Math.Max(blockFirst, window > 0 ? position - window + 1 : 0);
                int to = Math.Min(blockFirst + blockSize - 1, LastKey(shape.Causal, window, position, lastKey));
                if (from > to)
                {
                    continue;
                }

                int count = to - from + 1;
                float* blockKeys = keys + ((long)(from - blockFirst) * stride);
                float* blockValues = values + ((long)(from - blockFirst) * stride);
                for (int g = 0; g < group; g++)
                {
                    int state = (r * group) + g;
                    float* query = q + ((((long)(token0 + r) * shape.NumHeads) + (kvHead * group) + g) * headDim);
                    if (transposed)
                    {
                        BlockScores(query, keysT, headDim, blockScores);
                        for (int t = 0; t < count; t++)
                        {
                            scores[t] = blockScores[from - blockFirst + t] * shape.Scale;
                        }
                    }
                    else
                    {
                        for (int t = 0; t < count; t++)
                        {
                            scores[t] = Dot(query, blockKeys + ((long)t * stride), headDim) * shape.Scale;
                        }
                    }

                    if (shape.LogitSoftCap > 0)
                    {
                        SoftCap(scores, count, shape.LogitSoftCap);
                    }

                    float max = runningMax[state];
                    for (int t = 0; t < count; t++)
                    {
                        max = MathF.Max(max, scores[t]);
                    }

                    float* acc = accumulator + ((long)state * headDim);
                    // Rescale what was summed under the old max; exp(-inf) = 0 on the first block.
                    float correction = MathF.Exp(runningMax[state] - max);
                    if (correction != 1f)
                    {
                        Scale(acc, correction, headDim);
                        denominator[state] *= correction;
                    }

                    runningMax[state] = max;
                    var probabilities = new Span<float>(scores, count);
                    TensorPrimitives.Subtract(probabilities, max, probabilities);
                    TensorPrimitives.Exp(probabilities, probabilities);
                    denominator[state] += TensorPrimitives.Sum(probabilities);
                    AccumulateValues(blockValues, stride, scores, count, headDim, acc);   // the accumulator in registers across the keys
                }
            }
        }

        for (int r = 0; r < rows; r++)
        {
            for (int g = 0; g < group; g++)
            {
                int state = (r * group) + g;
                float* result = output + ((((long)(token0 + r) * shape.NumHeads) + (kvHead * group) + g) * headDim);
                TensorPrimitives.Divide(
                    new ReadOnlySpan<float>(accumulator + ((long)state * headDim), headDim),
                    denominator[state],
                    new Span<float>(result, headDim));
            }
        }
    }

    /// <summary>
    /// Prefill tiles score a block of 16 keys against each query with broadcast-FMAs over the block's keys transposed
    /// once per block ([headDim][16], shared by the tile's rows and the GQA group's heads), instead of 16 dot products
    /// that each end in a horizontal sum. Needs AVX-512, blocks of 16 and whole 16-float rows.
    /// </summary>
    private static bool TransposedKeysFit(in Shape shape) =>
        Avx512F.IsSupported && shape.BlockSize == Vector512<float>.Count && shape.HeadDim % Vector512<float>.Count == 0;

    /// <summary>keysT[d·16 + t] = keys[t·stride + d] for the block's <paramref name="count"/> keys; the rest zero.</summary>
    private static void TransposeKeys(float* keys, int stride, int count, int headDim, float* keysT)
    {
        Vector512<float>* block = stackalloc Vector512<float>[16];
        for (int d0 = 0; d0 < headDim; d0 += 16)
        {
            for (int t = 0; t < 16; t++)
            {
                block[t] = t < count ? Vector512.Load(keys + ((long)t * stride) + d0) : Vector512<float>.Zero;
            }

            MatMul.Transpose16x16(block);
            for (int d = 0; d < 16; d++)
            {
                block[d].Store(keysT + ((long)(d0 + d) * 16));
            }
        }
    }

    /// <summary>scores[t] = q·k_t for the 16 keys of a transposed block (four accumulators over the head's dims).</summary>
    private static void BlockScores(float* query, float* keysT, int headDim, float* scores)
    {
        Vector512<float> a0 = default, a1 = default, a2 = default, a3 = default;
        for (int d = 0; d < headDim; d += 4)
        {
            a0 = Vector512.FusedMultiplyAdd(Vector512.Create(query[d]), Vector512.Load(keysT + ((long)d * 16)), a0);
            a1 = Vector512.FusedMultiplyAdd(Vector512.Create(query[d + 1]), Vector512.Load(keysT + ((long)(d + 1) * 16)), a1);
            a2 = Vector512.FusedMultiplyAdd(Vector512.Create(query[d + 2]), Vector512.Load(keysT + ((long)(d + 2) * 16)), a2);
            a3 = Vector512.FusedMultiplyAdd(Vector512.Create(query[d + 3]), Vector512.Load(keysT + ((long)(d + 3) * 16)), a3);
        }

        ((a0 + a1) + (a2 + a3)).Store(scores);
    }

    /// <summary>q·k over one head; inlined because it runs once per (query, key) pair with short rows.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static float Dot(float* a, float* b, int length)
    {
        int i = 0;
        float sum = 0;
        if (Vector512.IsHardwareAccelerated && length >= Vector512<float>.Count)
        {
            var acc = Vector512<float>.Zero;
            for (; i <= length - Vector512<float>.Count; i += Vector512<float>.Count)
            {
                acc = Vector512.FusedMultiplyAdd(Vector512.Load(a + i), Vector512.Load(b + i), acc);
            }

            sum = Vector512.Sum(acc);
        }
        else if (Vector256.IsHardwareAccelerated && length >= Vector256<float>.Count)
        {
            var acc = Vector256<float>.Zero;
            for (; i <= length - Vector256<float>.Count; i += Vector256<float>.Count)
            {
                acc = Vector256.FusedMultiplyAdd(Vector256.Load(a + i), Vector256.Load(b + i), acc);
            }

            sum = Vector256.Sum(acc);
        }
        else if (Vector128.IsHardwareAccelerated && length >= Vector128<float>.Count)
        {
            var acc = Vector128<float>.Zero;
            for (; i <= length - Vector128<float>.Count; i += Vector128<float>.Count)
            {
                acc = Vector128.MultiplyAddEstimate(Vector128.Load(a + i), Vector128.Load(b + i), acc);
            }

            sum = Vector128.Sum(acc);
        }

        for (; i < length; i++)
        {
            sum += a[i] * b[i];
        }

        return sum;
    }

    private static void Scale(float* acc, float factor, int length)
    {
        var span = new Span<float>(acc, length);
        TensorPrimitives.Multiply(span, factor, span);
    }

    /// <summary>Bidirectional attention sees keys after each row: the whole sequence must be in the step.</summary>
    private static void ValidateBidirectional(bool causal, int* queryStartLoc, int* seqLens, int numSeqs)
    {
        if (causal)
        {
            return;
        }

        for (int s = 0; s < numSeqs; s++)
        {
            if (queryStartLoc[s + 1] - queryStartLoc[s] != seqLens[s])
            {
                throw new ArgumentException(
                    $"Sequence {s}: bidirectional attention needs the whole sequence in the step ({queryStartLoc[s + 1] - queryStartLoc[s]} of {seqLens[s]} tokens).", nameof(seqLens));
            }
        }
    }

    private static void Validate(int numTokens, int numHeads, int numKvHeads, int headDim, int blockSize, int* queryStartLoc, int* seqLens, int numSeqs)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(numTokens);
        ArgumentOutOfRangeException.ThrowIfNegative(numSeqs);
        ArgumentOutOfRangeException.ThrowIfNegative(numHeads);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(headDim);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(blockSize);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(numKvHeads);
        if (numHeads % numKvHeads != 0)
        {
            throw new ArgumentException($"numHeads ({numHeads}) must be a multiple of numKvHeads ({numKvHeads}).", nameof(numHeads));
        }

        if (numSeqs > 0 && (queryStartLoc[0] != 0 || queryStartLoc[numSeqs] != numTokens))
        {
            throw new ArgumentException("queryStartLoc must start at 0 and end at numTokens.", nameof(queryStartLoc));
        }

        for (int s = 0; s < numSeqs; s++)
        {
            int queryLen = queryStartLoc[s + 1] - queryStartLoc[s];
            if (queryLen < 0 || seqLens[s] < queryLen)
            {
                throw new ArgumentException($"Sequence {s}: query length {queryLen} must be in [0, seqLen {seqLens[s]}].", nameof(seqLens));
            }
        }
    }
}
