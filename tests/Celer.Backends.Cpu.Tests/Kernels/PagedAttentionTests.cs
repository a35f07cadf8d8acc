using Celer.Backends.Cpu.Kernels;
using Celer.Models.Weights;
using Xunit;

namespace Celer.Backends.Cpu.Tests.Kernels;

public unsafe class PagedAttentionTests
{
    // Outputs are convex combinations of values with |v| < 1. fp32 scores (headDim ≤ 128 terms), exp and the
    // streaming rescale each add a few ε (1.2e-7); 1e-5 absolute is ~50x that margin and far below the
    // change a wrong mask, block or head would make (order 1e-2).
    private const double AbsoluteTolerance = 1e-5;

    /// <summary>A sequence of the flat batch: its new query rows and its total length (cached + new).</summary>
    public readonly record struct Sequence(int QueryLen, int SeqLen);

    /// <summary>Decode, full prefill, chunked prefill, an idle sequence, and lengths on and across block edges.</summary>
    private static readonly Sequence[] MixedBatch =
    [
        new(1, 37), new(40, 40), new(21, 70), new(0, 9), new(1, 16), new(1, 17), new(17, 33), new(3, 48),
    ];

    public static TheoryData<int, int> GroupsAndHeadDims()
    {
        var data = new TheoryData<int, int>();
        foreach (int group in new[] { 1, 2, 4, 8 })
        {
            foreach (int headDim in new[] { 64, 80, 128 })
            {
                data.Add(group, headDim);
            }
        }

        return data;
    }

    [Theory]
    [MemberData(nameof(GroupsAndHeadDims))]
    public void Run_MixedBatch_MatchesDoubleReference(int group, int headDim)
        => AssertMatchesReference(numKvHeads: 2, group, headDim, blockSize: 16, slidingWindow: 0, MixedBatch, seed: (group * 1000) + headDim);

    /// <summary>Encoders' whole sequences: one row, rows within a block, across blocks and past a query tile (16 rows).</summary>
    private static readonly Sequence[] WholeSequences = [new(1, 1), new(3, 3), new(17, 17), new(40, 40), new(70, 70)];

    [Theory]
    [InlineData(1, 32, 16)]
    [InlineData(4, 64, 16)]
    [InlineData(1, 64, 5)]
    public void Run_Bidirectional_EveryRowSeesTheWholeSequence(int group, int headDim, int blockSize)
        => AssertMatchesReference(numKvHeads: 2, group, headDim, blockSize, slidingWindow: 0, WholeSequences, seed: 70 + group + headDim, causal: false);

    /// <summary>
    /// EmbeddingGemma's sliding layers: a row sees the keys less than W positions away on either side. Windows of one
    /// (itself only), inside a block, a block exactly, across blocks and query tiles, and wider than the sequences.
    /// </summary>
    [Theory]
    [InlineData(1, 16)]
    [InlineData(5, 16)]
    [InlineData(16, 16)]
    [InlineData(17, 5)]
    [InlineData(33, 7)]
    [InlineData(100, 16)]
    public void Run_BidirectionalWindow_SeesTheKeysLessThanWindowAway(int slidingWindow, int blockSize)
        => AssertMatchesReference(numKvHeads: 1, group: 4, headDim: 64, blockSize, slidingWindow, WholeSequences, seed: 90 + slidingWindow + blockSize, causal: false);

    [Fact]
    public void Run_Bidirectional_RefusesAPartSequence() =>
        Assert.Contains("whole sequence", Assert.Throws<ArgumentException>(
            () => AssertMatchesReference(1, 1, 32, 16, 0, [new(3, 5)], seed: 1, causal: false)).Message, StringComparison.Ordinal);

    [Theory]
    [InlineData(1)]
    [InlineData(5)]
    [InlineData(7)]
    [InlineData(32)]
    public void Run_OddBlockSizes_MatchesDoubleReference(int blockSize)
        => AssertMatchesReference(numKvHeads: 2, group: 4, headDim: 64, blockSize, slidingWindow: 0, MixedBatch, seed: blockSize);

    [Theory]
    [InlineData(1, 16)]
    [InlineData(5, 16)]
    [InlineData(16, 16)]
    [InlineData(17, 5)]
    [InlineData(33, 16)]
    [InlineData(100, 7)]
    public void Run_SlidingWindow_AttendsToTheLastWindowPositions(int slidingWindow, int blockSize)
        => AssertMatchesReference(numKvHeads: 2, group: 2, headDim: 80, blockSize, slidingWindow, MixedBatch, seed: slidingWindow + blockSize);

    [Theory]
    [InlineData(0)]
    [InlineData(256)]
    public void Run_LongDecode_MatchesDoubleReference(int slidingWindow)
        => AssertMatchesReference(numKvHeads: 4, group: 4, headDim: 128, blockSize: 16, slidingWindow, [new(1, 1000), new(1, 513), new(2, 300)], seed: 7 + slidingWindow);

    /// <summary>
    /// Decode rows of one kv head are fewer work items than any machine has cores, so long contexts are split
    /// over cores and the partitions merged (split-K); the lengths put partition and block edges in odd places.
    /// </summary>
    [Theory]
    [InlineData(1, 64, 0)]
    [InlineData(2, 80, 0)]
    [InlineData(4, 128, 0)]
    [InlineData(8, 64, 0)]
    [InlineData(8, 128, 700)]
    [InlineData(3, 80, 1500)]
    public void Run_SplitContextDecode_MatchesDoubleReference(int group, int headDim, int slidingWindow)
        => AssertMatchesReference(numKvHeads: 1, group, headDim, blockSize: 16, slidingWindow, [new(1, 4099), new(1, 1025), new(1, 511)], seed: (group * 100) + headDim + slidingWindow);

    /// <summary>Decode at lengths on and next to block edges (block 16), where the last block holds one key or is full.</summary>
    [Theory]
    [InlineData(1, 64)]
    [InlineData(2, 128)]
    [InlineData(4, 80)]
    [InlineData(8, 32)]
    public void Run_DecodeAtBlockEdges_MatchesDoubleReference(int group, int headDim)
        => AssertMatchesReference(
            numKvHeads: 2, group, headDim, blockSize: 16, slidingWindow: 0,
            [new(1, 1), new(1, 2), new(1, 3), new(1, 4), new(1, 5), new(1, 15), new(1, 16), new(1, 17), new(1, 31), new(1, 32), new(1, 33), new(1, 256), new(1, 257), new(1, 513)],
            seed: (group * 10) + headDim);

    /// <summary>
    /// Gemma 2's soft-capping of the scores (cap · tanh(score / cap)) on prefill tiles, decode rows and split decodes, with
    /// and without a window; the queries are scaled so that scores reach the cap's range, where capping changes the softmax.
    /// </summary>
    [Theory]
    [InlineData(1f, 0, 16)]
    [InlineData(5f, 0, 16)]
    [InlineData(5f, 33, 7)]
    [InlineData(50f, 0, 16)]
    public void Run_LogitSoftCap_MatchesDoubleReference(float softCap, int slidingWindow, int blockSize)
    {
        AssertMatchesReference(numKvHeads: 2, group: 2, headDim: 64, blockSize, slidingWindow, MixedBatch, seed: 300 + (int)softCap, softCap, queryScale: 16);
        AssertMatchesReference(numKvHeads: 1, group: 4, headDim: 64, blockSize, slidingWindow, [new(1, 2049), new(1, 300)], seed: 400 + (int)softCap, softCap, queryScale: 16);
    }

    /// <summary>
    /// gpt-oss's attention sinks (one logit per head in every softmax denominator, no value with it) on prefill tiles,
    /// decode rows and a decode split over cores (where the sink must be counted once), sliding and full; some heads' sinks
    /// sit far above the scores, so the sink takes most of their softmax.
    /// </summary>
    [Theory]
    [InlineData(0, 16)]
    [InlineData(33, 7)]
    public void Run_AttentionSinks_MatchDoubleReference(int slidingWindow, int blockSize)
    {
        AssertMatchesReference(numKvHeads: 2, group: 4, headDim: 64, blockSize, slidingWindow, MixedBatch, seed: 500 + slidingWindow, sinks: true);
        AssertMatchesReference(numKvHeads: 1, group: 8, headDim: 64, blockSize, slidingWindow, [new(1, 3000), new(1, 300)], seed: 600 + slidingWindow, sinks: true);
    }

    [Fact]
    public void Run_SingleKey_ReturnsItsValue()
    {
        // One token attending to itself: softmax of one score is 1, so the output is exactly v.
        float[] q = [0.5f, -1f];
        float[] k = [0.25f, 0.75f];
        float[] v = [0.125f, -0.5f];
        int[] blockTable = [0];
        int[] queryStartLoc = [0, 1];
        int[] seqLens = [1];
        var output = new float[2];
        fixed (float* pq = q, pk = k, pv = v, po = output)
        fixed (int* pb = blockTable, pqs = queryStartLoc, ps = seqLens)
        {
            PagedAttention.Run(pq, 1, 1, 1, 2, pk, pv, 1, pb, 1, pqs, ps, 1, 0.7f, 0, po);
        }

        Assert.Equal(v, output);
    }

    [Fact]
    public void Run_RejectsHeadsNotAMultipleOfKvHeads()
    {
        int[] queryStartLoc = [0, 1];
        int[] seqLens = [1];
        Assert.Throws<ArgumentException>(() =>
        {
            fixed (int* pqs = queryStartLoc, ps = seqLens)
            {
                PagedAttention.Run(null, 1, 6, 4, 64, null, null, 16, null, 1, pqs, ps, 1, 1f, 0, null);
            }
        });
    }

    // A bf16 or FP8 cache against the reference over its decoded values (bf16 widened; FP8 code · scale): mixed
    // prefill/decode rows, a sliding window across blocks, and a long decode split over cores. The poison block rounds
    // (FP8: saturates) to values still far outside |v| < 1.
    [Theory]
    [InlineData(DType.BF16, 1f, 1f)]
    [InlineData(DType.F8E4M3, 0.5f, 0.25f)]
    [InlineData(DType.F8E5M2, 1f, 2f)]
    public void Run_NarrowCache_MatchesDoubleReferenceOnTheDecodedCache(DType type, float kScale, float vScale)
    {
        var format = new KvCacheFormat(type, kScale, vScale);
        AssertMatchesReference(numKvHeads: 2, group: 4, headDim: 128, blockSize: 16, slidingWindow: 0, MixedBatch, seed: 11, cache: format);
        AssertMatchesReference(numKvHeads: 2, group: 2, headDim: 64, blockSize: 7, slidingWindow: 33, MixedBatch, seed: 12, cache: format);
        AssertMatchesReference(numKvHeads: 1, group: 8, headDim: 128, blockSize: 16, slidingWindow: 0, [new(1, 3000)], seed: 13, cache: format);
    }

    private static void AssertMatchesReference(
        int numKvHeads, int group, int headDim, int blockSize, int slidingWindow, Sequence[] sequences, int seed, float softCap = 0f, float queryScale = 4,
        KvCacheFormat? cache = null, bool sinks = false, bool causal = true)
    {
        var random = new Random(seed);
        int numHeads = numKvHeads * group;
        int numSeqs = sequences.Length;
        int numTokens = sequences.Sum(s => s.QueryLen);
        int blockTableStride = sequences.Max(s => (s.SeqLen + blockSize - 1) / blockSize) + 2;
        int usedBlocks = sequences.Sum(s => (s.SeqLen + blockSize - 1) / blockSize);
        int numBlocks = usedBlocks + 1;
        int poisonBlock = numBlocks - 1;
        int tokenSize = numKvHeads * headDim;

        // Blocks handed out in shuffled order, as a block pool does after some churn; unused table entries point
        // at a poison block whose huge keys and values would show up in any output that read them.
        int[] order = Enumerable.Range(0, usedBlocks).OrderBy(_ => random.Next()).ToArray();
        int[] blockTables = Enumerable.Repeat(poisonBlock, numSeqs * blockTableStride).ToArray();
        int next = 0;
        for (int s = 0; s < numSeqs; s++)
        {
            for (int b = 0; b < (sequences[s].SeqLen + blockSize - 1) / blockSize; b++)
            {
                blockTables[(s * blockTableStride) + b] = order[next++];
            }
        }

        float[] kCache = TestData.Floats(random, (long)numBlocks * blockSize * tokenSize);
        float[] vCache = TestData.Floats(random, (long)numBlocks * blockSize * tokenSize);
        Array.Fill(kCache, 50f, poisonBlock * blockSize * tokenSize, blockSize * tokenSize);
        Array.Fill(vCache, 1e6f, poisonBlock * blockSize * tokenSize, blockSize * tokenSize);
        byte[] kCodes = [], vCodes = [];
        if (cache is { } f)
        {
            // What the cache holds, and the values it stands for: the references attend over those.
            kCodes = Encode(kCache, f.KScale, f.Type);
            vCodes = Encode(vCache, f.VScale, f.Type);
            kCache = Decode(kCodes, f.KScale, f.Type);
            vCache = Decode(vCodes, f.VScale, f.Type);
        }

        // Queries scaled up so the softmax is far from uniform and masking mistakes are visible.
        float[] q = TestData.Floats(random, (long)numTokens * numHeads * headDim).Select(x => x * queryScale).ToArray();
        int[] queryStartLoc = new int[numSeqs + 1];
        for (int s = 0; s < numSeqs; s++)
        {
            queryStartLoc[s + 1] = queryStartLoc[s] + sequences[s].QueryLen;
        }

        int[] seqLens = sequences.Select(s => s.SeqLen).ToArray();
        float scale = 1 / MathF.Sqrt(headDim);
        // Every third head's sink far above its scores.
        float[]? sinkLogits = sinks ? [.. Enumerable.Range(0, numHeads).Select(h => h % 3 == 2 ? 8f + random.NextSingle() : 4 * (random.NextSingle() - 0.5f))] : null;
        var output = new float[numTokens * numHeads * headDim];
        var reference = new float[output.Length];
        fixed (float* pq = q, pk = kCache, pv = vCache, po = output, pr = reference, psink = sinkLogits)
        fixed (byte* kc = kCodes, vc = vCodes)
        fixed (int* pb = blockTables, pqs = queryStartLoc, ps = seqLens)
        {
            if (cache is { } format)
            {
                PagedAttention.Run(pq, numTokens, numHeads, numKvHeads, headDim, kc, vc, format, blockSize, pb, blockTableStride, pqs, ps, numSeqs, scale, slidingWindow, po, softCap, psink);
            }
            else
            {
                PagedAttention.Run(pq, numTokens, numHeads, numKvHeads, headDim, pk, pv, blockSize, pb, blockTableStride, pqs, ps, numSeqs, scale, slidingWindow, po, softCap, psink, causal);
            }

            PagedAttention.RunReference(pq, numTokens, numHeads, numKvHeads, headDim, pk, pv, blockSize, pb, blockTableStride, pqs, ps, numSeqs, scale, slidingWindow, pr, softCap, psink, causal);
        }

        double[] exact = DoubleReference(q, kCache, vCache, numHeads, numKvHeads, headDim, blockSize, blockTables, blockTableStride, sequences, scale, slidingWindow, softCap, sinkLogits, causal);
        TestData.AssertClose(exact, output, 0, AbsoluteTolerance, default, "output");
        TestData.AssertClose(exact, reference, 0, AbsoluteTolerance, default, "reference");
    }

    /// <summary>A narrow cache's bytes: bf16 rounded to nearest even (two bytes each), or FP8 codes of value / scale.</summary>
    private static byte[] Encode(float[] values, float scale, DType type) => type == DType.BF16
        ? values.SelectMany(x => BitConverter.GetBytes(Conversions.F32ToBF16(x))).ToArray()
        : values.Select(x => Fp8.Encode(x / scale, type)).ToArray();

    private static float[] Decode(byte[] bytes, float scale, DType type) => type == DType.BF16
        ? Enumerable.Range(0, bytes.Length / 2).Select(i => Conversions.BF16ToF32(BitConverter.ToUInt16(bytes, 2 * i))).ToArray()
        : bytes.Select(c => Fp8.Decode(c, type) * scale).ToArray();

    /// <summary>
    /// Attention from its definition in double: row j of sequence s is at position seqLen − queryLen + j and sees
    /// positions p ≤ position with p &gt; position − window (transformers' sliding_window_overlay) when window &gt; 0;
    /// with <paramref name="sinks"/>, gpt-oss's eager attention: softmax over [scores, sink] with the sink's column dropped.
    /// </summary>
    private static double[] DoubleReference(
        float[] q, float[] kCache, float[] vCache, int numHeads, int numKvHeads, int headDim, int blockSize,
        int[] blockTables, int blockTableStride, Sequence[] sequences, float scale, int slidingWindow, float softCap, float[]? sinks, bool causal)
    {
        int numTokens = sequences.Sum(s => s.QueryLen);
        var output = new double[numTokens * numHeads * headDim];
        int group = numHeads / numKvHeads;
        int token = 0;
        for (int s = 0; s < sequences.Length; s++)
        {
            for (int j = 0; j < sequences[s].QueryLen; j++, token++)
            {
                int position = sequences[s].SeqLen - sequences[s].QueryLen + j;
                // Bidirectional: every position of the sequence; a window keeps those less than W away (before it, causal).
                var visible = Enumerable.Range(0, causal ? position + 1 : sequences[s].SeqLen).Where(p => slidingWindow <= 0 || Math.Abs(p - position) < slidingWindow).ToArray();
                for (int h = 0; h < numHeads; h++)
                {
                    int kvHead = h / group;
                    long Row(int p) => ((((long)blockTables[(s * blockTableStride) + (p / blockSize)] * blockSize) + (p % blockSize)) * numKvHeads + kvHead) * headDim;
                    var scores = visible.Select(p =>
                    {
                        double dot = 0;
                        for (int i = 0; i < headDim; i++)
                        {
                            dot += (double)q[(((token * numHeads) + h) * headDim) + i] * kCache[Row(p) + i];
                        }

                        return softCap > 0 ? softCap * Math.Tanh(dot * scale / softCap) : dot * scale;
                    }).ToArray();
                    // A sink is one more logit of the softmax, with no value row.
                    double max = sinks is null ? scores.Max() : Math.Max(scores.Max(), sinks[h]);
                    double[] weights = scores.Select(x => Math.Exp(x - max)).ToArray();
                    double sum = weights.Sum() + (sinks is null ? 0 : Math.Exp(sinks[h] - max));
                    for (int i = 0; i < headDim; i++)
                    {
                        double acc = 0;
                        for (int t = 0; t < visible.Length; t++)
                        {
                            acc += weights[t] * vCache[Row(visible[t]) + i];
                        }

                        output[(((token * numHeads) + h) * headDim) + i] = acc / sum;
                    }
                }
            }
        }

        return output;
    }
}
