using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Celer.Backends.Cpu.Kernels;

/// <summary>
/// Decode attention (one query row per sequence), which is a pure stream over the sequence's K/V: for one
/// (sequence, kv head, range of KV blocks) every query head of the GQA group is scored against a key row
/// while it is in L1, four keys per step with SIMD, the block's softmax weights are exponentiated with a
/// vector exp, and the value rows are summed into four output vectors per step. The next block is
/// prefetched while the current one is processed, since blocks sit at unrelated addresses (no hardware
/// prefetcher follows a block table). A long context is split into ranges of blocks on different cores
/// (split-K, as vLLM's paged_attention_v2); each range leaves (max, sum, unnormalized output) per head and
/// <see cref="MergePartitions"/> combines them.
/// </summary>
public static unsafe partial class PagedAttention
{
    /// <summary>Fewest positions worth a partition of their own: 16 KiB of K and V per kv head at head dim 128.</summary>
    private const int MinPartitionPositions = 256;

    /// <summary>Softmax state of one query head over part of a context.</summary>
    private readonly struct HeadState(float* max, float* sum, float* acc)
    {
        public float* Max { get; } = max;

        public float* Sum { get; } = sum;

        /// <summary>Σ exp(score − max) · v, headDim floats, not yet divided by the sum.</summary>
        public float* Acc { get; } = acc;
    }

    /// <summary>How many partitions a decode row at <paramref name="position"/> gets when the batch alone cannot fill the cores.</summary>
    private static int DecodePartitions(int position, int window, int blockSize, int decodeItems)
    {
        int target = Environment.ProcessorCount * 2;
        if (decodeItems >= target)
        {
            return 1;
        }

        int visible = window > 0 ? Math.Min(window, position + 1) : position + 1;
        int byLength = Math.Max(1, visible / MinPartitionPositions);
        int blocks = (position / blockSize) - (Math.Max(0, position - visible + 1) / blockSize) + 1;
        return Math.Min(Math.Min(byLength, blocks), (target + decodeItems - 1) / decodeItems);
    }

    /// <summary>
    /// Attention of one query row (all heads of <paramref name="kvHead"/>'s group) over partition
    /// <paramref name="partition"/> of <paramref name="partitions"/> of the blocks it can see; the state of
    /// query head g of the group is written at <paramref name="state"/> + g·(headDim + 2): max, sum, output.
    /// <paramref name="scores"/> holds group · blockSize floats, then <see cref="DecodedBlockFloats"/> of scratch.
    /// </summary>
    private static void AttendDecode(
        in Shape shape, float* query, void* kCache, void* vCache, int* blockTable, int position, int kvHead,
        int partition, int partitions, float* state, float* scores)
    {
        int headDim = shape.HeadDim;
        int blockSize = shape.BlockSize;
        int group = shape.NumHeads / shape.NumKvHeads;
        int kvStride = shape.NumKvHeads * headDim;
        int lowest = shape.SlidingWindow > 0 ? Math.Max(0, position - shape.SlidingWindow + 1) : 0;
        int firstBlock = lowest / blockSize;
        var (from, to) = KernelScheduling.Range(partition, partitions, (position / blockSize) - firstBlock + 1);

        for (int g = 0; g < group; g++)
        {
            // A sink's term goes into the first partition only, so the merge counts it once.
            HeadState head = StateOf(state, g, headDim);
            (*head.Max, *head.Sum) = partition == 0 ? shape.InitialState((kvHead * group) + g) : (float.NegativeInfinity, 0f);
            new Span<float>(head.Acc, headDim).Clear();
        }

        for (int block = firstBlock + from; block < firstBlock + to; block++)
        {
            long blockBase = ((long)blockTable[block] * blockSize * kvStride) + ((long)kvHead * headDim);
            if (block + 1 < firstBlock + to && shape.Cache.Type == Celer.Models.Weights.DType.F32)
            {
                long nextBase = ((long)blockTable[block + 1] * blockSize * kvStride) + ((long)kvHead * headDim);
                Prefetch((float*)kCache + nextBase, (float*)vCache + nextBase, blockSize, kvStride, headDim);
            }

            int blockFirst = block * blockSize;
            int start = Math.Max(blockFirst, lowest) - blockFirst;
            int count = Math.Min(blockFirst + blockSize - 1, position) - blockFirst - start + 1;
            int stride = BlockRows(shape, kCache, vCache, blockBase, start, count, scores + (group * blockSize), out float* keys, out float* values);
            for (int g = 0; g < group; g++)
            {
                float* headScores = scores + (g * blockSize);
                ScoreKeys(query + ((long)g * headDim), keys, stride, count, headDim, shape.Scale, headScores);
                if (shape.LogitSoftCap > 0)
                {
                    SoftCap(headScores, count, shape.LogitSoftCap);
                }

                HeadState head = StateOf(state, g, headDim);
                float max = *head.Max;
                for (int t = 0; t < count; t++)
                {
                    max = MathF.Max(max, headScores[t]);
                }

                // Rescale what was summed under the old max; exp(−∞) = 0 on the first block.
                float correction = MathF.Exp(*head.Max - max);
                if (correction != 1f)
                {
                    Scale(head.Acc, correction, headDim);
                    *head.Sum *= correction;
                }

                *head.Max = max;
                *head.Sum += ExpShifted(headScores, count, max);
                AccumulateValues(values, stride, headScores, count, headDim, head.Acc);
            }
        }
    }

    /// <summary>
    /// Combines the partitions of decode row <paramref name="token"/> (states laid out partition-major, each
    /// numHeads·(headDim + 2) floats) into the normalized output: out = Σ_i e^(m_i − M)·acc_i / Σ_i e^(m_i − M)·l_i.
    /// </summary>
    private static void MergePartitions(float* states, int partitions, int numHeads, int headDim, float* output)
    {
        int stride = numHeads * (headDim + 2);
        for (int h = 0; h < numHeads; h++)
        {
            float max = float.NegativeInfinity;
            for (int i = 0; i < partitions; i++)
            {
                max = MathF.Max(max, *StateOf(states + ((long)i * stride), h, headDim).Max);
            }

            float* result = output + ((long)h * headDim);
            new Span<float>(result, headDim).Clear();
            float sum = 0;
            for (int i = 0; i < partitions; i++)
            {
                HeadState part = StateOf(states + ((long)i * stride), h, headDim);
                float weight = MathF.Exp(*part.Max - max);
                sum += weight * *part.Sum;
                for (int d = 0; d < headDim; d++)
                {
                    result[d] += weight * part.Acc[d];
                }
            }

            Scale(result, 1 / sum, headDim);
        }
    }

    /// <summary>Decode row of one sequence in one work item: the whole context on this core, normalized straight into the output.</summary>
    private static void AttendDecodeRow(in Shape shape, float* query, void* kCache, void* vCache, int* blockTable, int position, int kvHead, float* output)
    {
        int group = shape.NumHeads / shape.NumKvHeads;
        int headDim = shape.HeadDim;
        float* state = ThreadScratch.Floats((group * (headDim + 2)) + (group * shape.BlockSize) + DecodedBlockFloats(shape));
        AttendDecode(shape, query, kCache, vCache, blockTable, position, kvHead, 0, 1, state, state + (group * (headDim + 2)));
        for (int g = 0; g < group; g++)
        {
            HeadState head = StateOf(state, g, headDim);
            float* result = output + ((long)g * headDim);
            new ReadOnlySpan<float>(head.Acc, headDim).CopyTo(new Span<float>(result, headDim));
            Scale(result, 1 / *head.Sum, headDim);
        }
    }

    private static HeadState StateOf(float* states, int head, int headDim)
    {
        float* s = states + ((long)head * (headDim + 2));
        return new HeadState(s, s + 1, s + 2);
    }

    /// <summary>Asks for the next block's K and V rows of this kv head (headDim floats each, every 64 bytes).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Prefetch(float* keys, float* values, int rows, int kvStride, int headDim)
    {
        if (!Sse.IsSupported)
        {
            return;
        }

        for (int t = 0; t < rows; t++)
        {
            for (int d = 0; d < headDim; d += 16)
            {
                Sse.Prefetch0(keys + ((long)t * kvStride) + d);
                Sse.Prefetch0(values + ((long)t * kvStride) + d);
            }
        }
    }

    /// <summary>scores[t] = scale · q · k_t for <paramref name="count"/> key rows (stride <paramref name="kvStride"/>), four keys per step.</summary>
    private static void ScoreKeys(float* q, float* keys, int kvStride, int count, int headDim, float scale, float* scores)
    {
        int t = 0;
        for (; t + 4 <= count; t += 4)
        {
            float* k0 = keys + ((long)t * kvStride);
            Dot4(q, k0, k0 + kvStride, k0 + (2L * kvStride), k0 + (3L * kvStride), headDim, scores + t);
            scores[t] *= scale;
            scores[t + 1] *= scale;
            scores[t + 2] *= scale;
            scores[t + 3] *= scale;
        }

        for (; t < count; t++)
        {
            scores[t] = Dot(q, keys + ((long)t * kvStride), headDim) * scale;
        }
    }

    /// <summary>result[0..3] = q · k0..k3: one q load feeds four independent FMA chains.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Dot4(float* q, float* k0, float* k1, float* k2, float* k3, int length, float* result)
    {
        int i = 0;
        float s0 = 0, s1 = 0, s2 = 0, s3 = 0;
        if (Vector512.IsHardwareAccelerated && length >= 16)
        {
            i = VectorLoops.Dot4<Vector512Ops, Vector512<float>>(q, k0, k1, k2, k3, length, out s0, out s1, out s2, out s3);
        }
        else if (Vector256.IsHardwareAccelerated && length >= 8)
        {
            i = VectorLoops.Dot4<Vector256Ops, Vector256<float>>(q, k0, k1, k2, k3, length, out s0, out s1, out s2, out s3);
        }

        for (; i < length; i++)
        {
            s0 += q[i] * k0[i];
            s1 += q[i] * k1[i];
            s2 += q[i] * k2[i];
            s3 += q[i] * k3[i];
        }

        result[0] = s0;
        result[1] = s1;
        result[2] = s2;
        result[3] = s3;
    }

    /// <summary>scores[t] = exp(scores[t] − max) in place, with the vector exp; returns their sum.</summary>
    private static float ExpShifted(float* scores, int count, float max)
    {
        int t = 0;
        float sum = 0;
        if (Vector512.IsHardwareAccelerated)
        {
            sum = ExpShiftedVectors<Vector512Ops, Vector512<float>>(scores, count, max, ref t);
        }

        // 256-bit vectors also take what is left of 512-bit ones (8 to 15 scores).
        if (Vector256.IsHardwareAccelerated)
        {
            sum += ExpShiftedVectors<Vector256Ops, Vector256<float>>(scores, count, max, ref t);
        }

        for (; t < count; t++)
        {
            scores[t] = MathF.Exp(scores[t] - max);
            sum += scores[t];
        }

        return sum;
    }

    /// <summary><see cref="ExpShifted"/> over the whole vectors from <paramref name="t"/> on at one width, advancing it; returns their sum.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static float ExpShiftedVectors<TOps, TVec>(float* scores, int count, float max, ref int t)
        where TOps : struct, IVectorOps<TVec>
        where TVec : struct
    {
        var m = TOps.Create(max);
        TVec total = default;
        for (; t <= count - TOps.Count; t += TOps.Count)
        {
            var e = TOps.Exp(TOps.Subtract(TOps.Load(scores + t), m));
            TOps.Store(e, scores + t);
            total = TOps.Add(total, e);
        }

        return TOps.Sum(total);
    }

    /// <summary>acc += Σ_t p[t] · v_t over <paramref name="count"/> value rows, four output vectors (64 or 32 floats) per pass.</summary>
    private static void AccumulateValues(float* values, int kvStride, float* p, int count, int headDim, float* acc)
    {
        int d = 0;
        if (Vector512.IsHardwareAccelerated)
        {
            d = AccumulateValues4<Vector512Ops, Vector512<float>>(values, kvStride, p, count, headDim, acc, d);
        }

        if (Vector256.IsHardwareAccelerated)
        {
            d = AccumulateValues4<Vector256Ops, Vector256<float>>(values, kvStride, p, count, headDim, acc, d);
            for (; d <= headDim - 8; d += 8)
            {
                var a0 = Vector256.Load(acc + d);
                float* v = values + d;
                for (int t = 0; t < count; t++, v += kvStride)
                {
                    a0 = Vector256.FusedMultiplyAdd(Vector256.Load(v), Vector256.Create(p[t]), a0);
                }

                a0.Store(acc + d);
            }
        }

        for (; d < headDim; d++)
        {
            float a = acc[d];
            for (int t = 0; t < count; t++)
            {
                a += p[t] * values[((long)t * kvStride) + d];
            }

            acc[d] = a;
        }
    }

    /// <summary>
    /// <see cref="AccumulateValues"/> four vectors at a time at one width, from dimension <paramref name="d"/>;
    /// returns where it stopped.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static int AccumulateValues4<TOps, TVec>(float* values, int kvStride, float* p, int count, int headDim, float* acc, int d)
        where TOps : struct, IVectorOps<TVec>
        where TVec : struct
    {
        int n = TOps.Count;
        for (; d <= headDim - (4 * n); d += 4 * n)
        {
            var a0 = TOps.Load(acc + d);
            var a1 = TOps.Load(acc + d + n);
            var a2 = TOps.Load(acc + d + (2 * n));
            var a3 = TOps.Load(acc + d + (3 * n));
            float* v = values + d;
            for (int t = 0; t < count; t++, v += kvStride)
            {
                var pt = TOps.Create(p[t]);
                a0 = TOps.FusedMultiplyAdd(TOps.Load(v), pt, a0);
                a1 = TOps.FusedMultiplyAdd(TOps.Load(v + n), pt, a1);
                a2 = TOps.FusedMultiplyAdd(TOps.Load(v + (2 * n)), pt, a2);
                a3 = TOps.FusedMultiplyAdd(TOps.Load(v + (3 * n)), pt, a3);
            }

            TOps.Store(a0, acc + d);
            TOps.Store(a1, acc + d + n);
            TOps.Store(a2, acc + d + (2 * n));
            TOps.Store(a3, acc + d + (3 * n));
        }

        return d;
    }

}
