using Celer.Models.Backend;
using Celer.Models.Weights;

namespace Celer.Backends.Cuda.Tests;

/// <summary>
/// An encoder's CUDA operators (encoder.cu: LayerNorm, the post-norm residual LayerNorm, GELU in both forms, the input
/// embeddings) and bidirectional attention through <see cref="CudaBackend"/>, against plain double-precision references
/// written here, on random inputs (never zeros) that the model dtype holds exactly. Tolerances, per element where the
/// kernels round once: a 16-bit output may be one ulp of its dtype off the reference rounded to it (the kernel's fp32
/// value and the exact one can fall either side of a rounding boundary), plus 1e-6 of what fp32 cancelled on the way;
/// fp32 outputs 1e-6 of that (≈ 16 ulps). Attention is norm-relative per sequence (bf16 probabilities feed the P·V MMA).
/// </summary>
public sealed class EncoderOperatorParityTests
{
    // BERT's layer_norm_eps.
    private const float Eps = 1e-12f;

    [Theory]
    [InlineData(3, 64, DType.BF16)]      // tiny test models
    [InlineData(5, 128, DType.BF16)]
    [InlineData(4, 384, DType.BF16)]     // all-MiniLM, bge-small
    [InlineData(4, 768, DType.BF16)]     // BERT-base
    [InlineData(3, 1024, DType.F16)]     // BERT-large, XLM-R large
    [InlineData(2, 1000, DType.BF16)]
    [InlineData(3, 1003, DType.BF16)]    // not a whole number of 16-byte vectors: the element-wise path
    [InlineData(2, 8192, DType.BF16)]
    [InlineData(3, 768, DType.F32)]
    [InlineData(2, 8192, DType.F32)]     // two vectors per thread
    [InlineData(3, 1003, DType.F32)]
    public void Layer_norms_match_the_reference(int rows, int hidden, DType dtype)
    {
        Gpu.Require();
        var random = new Random(rows * 1000 + hidden);
        float[] x = HiddenStates(random, rows, hidden, dtype), residual = HiddenStates(random, rows, hidden, dtype);
        float[] weight = Values(random, hidden, 0.5f, 1.5f, dtype), bias = Values(random, hidden, -0.5f, 0.5f, dtype);

        using var host = new HostTensors(1);
        using var gpu = new CudaBackend(Gpu.Device, dtype);
        Tensor w = gpu.LoadWeight(host.FromValues("w", weight, hidden)), b = gpu.LoadWeight(host.FromValues("b", bias, hidden));
        Tensor xs = gpu.LoadWeight(host.FromValues("x", x, rows, hidden)), y = gpu.Allocate("y", dtype, rows, hidden);
        gpu.LayerNorm(xs, rows, w, b, Eps, y);
        float[] normed = HostTensors.Read(gpu, y, rows);
        gpu.LayerNorm(xs, rows, w, b, Eps, xs);   // y = x: in place
        Assert.Equal(normed, HostTensors.Read(gpu, xs, rows));

        Tensor xa = gpu.LoadWeight(host.FromValues("xa", x, rows, hidden)), rs = gpu.LoadWeight(host.FromValues("r", residual, rows, hidden));
        gpu.AddLayerNorm(xa, rs, rows, w, b, Eps);
        float[] added = HostTensors.Read(gpu, rs, rows);
        Assert.Equal(x, HostTensors.Read(gpu, xa, rows));   // x is left as it is

        var sum = new double[hidden];
        for (int r = 0; r < rows; r++)
        {
            for (int c = 0; c < hidden; c++)
            {
                sum[c] = x[r * hidden + c];
            }

            CheckLayerNormRow(sum, weight, bias, normed.AsSpan(r * hidden, hidden), dtype, $"layer_norm row {r}");
            for (int c = 0; c < hidden; c++)
            {
                sum[c] = Round(dtype, (double)x[r * hidden + c] + residual[r * hidden + c]);   // torch adds in the model dtype
            }

            CheckLayerNormRow(sum, weight, bias, added.AsSpan(r * hidden, hidden), dtype, $"add_layer_norm row {r}");
        }
    }

    [Theory]
    [InlineData(3, 3072, DType.BF16)]    // BERT-base's intermediate size
    [InlineData(5, 1003, DType.BF16)]    // a tail past the last whole vector
    [InlineData(4, 1536, DType.F16)]
    [InlineData(2, 333, DType.F32)]
    [InlineData(3, 4096, DType.F32)]
    public void Gelu_matches_the_reference_in_every_form(int rows, int width, DType dtype)
    {
        Gpu.Require();
        var random = new Random(rows + width);
        float[] x = Values(random, rows * width, -6f, 6f, dtype);
        using var host = new HostTensors(1);
        using var gpu = new CudaBackend(Gpu.Device, dtype);
        foreach (GeluForm form in Enum.GetValues<GeluForm>())
        {
            // One more row than is activated: the operator's row count is respected.
            float[] padded = [.. x, .. Values(random, width, -6f, 6f, dtype)];
            Tensor xs = gpu.LoadWeight(host.FromValues("x", padded, rows + 1, width));
            gpu.Gelu(xs, rows, form);
            float[] got = HostTensors.Read(gpu, xs, rows + 1);
            for (int i = 0; i < x.Length; i++)
            {
                double v = x[i];
                double reference = form switch
                {
                    GeluForm.Tanh => 0.5 * v * (1 + Math.Tanh(0.7978845608028654 * (v + 0.044715 * v * v * v))),
                    GeluForm.Quick => v / (1 + Math.Exp(-1.702 * v)),
                    _ => 0.5 * v * Erfc(-v / Math.Sqrt(2)),
                };
                // fp32's 1 + erf (or 1 + tanh) cancels for v ≪ 0: the slack scales with |v|, not with the tiny result.
                CheckElement(reference, got[i], Math.Abs(v), dtype, $"gelu ({form}) of {v} at {i}");
            }

            Assert.Equal(padded.AsSpan(x.Length).ToArray(), got.AsSpan(x.Length).ToArray());
        }
    }

    [Theory]
    [InlineData(DType.BF16, 96, true, true)]
    [InlineData(DType.BF16, 100, true, true)]     // not a whole number of 16-byte vectors
    [InlineData(DType.BF16, 96, true, false)]     // no token type ids in the batch: all type 0
    [InlineData(DType.BF16, 96, false, true)]     // no token type table (nothing added)
    [InlineData(DType.F16, 64, true, true)]
    [InlineData(DType.F32, 100, true, true)]
    public void Encoder_embedding_matches_the_reference(DType dtype, int hidden, bool typeTable, bool typeIds)
    {
        Gpu.Require();
        const int vocab = 40, types = 2, maxPositions = 20, offset = 2;   // RoBERTa: padding index 1, positions from 2
        var random = new Random(hidden + (typeTable ? 1 : 0) + (typeIds ? 2 : 0));
        float[] words = Values(random, vocab * hidden, -1f, 1f, dtype), typeRows = Values(random, types * hidden, -1f, 1f, dtype);
        float[] positionRows = Values(random, maxPositions * hidden, -1f, 1f, dtype);
        // Two sequences (a pair's two segments would be one sequence; here each has both types) of 5 and 13 tokens.
        int[] lengths = [5, 13];
        int rows = lengths.Sum();
        int[] ids = Enumerable.Range(0, rows).Select(_ => random.Next(vocab)).ToArray();
        int[] positions = lengths.SelectMany(n => Enumerable.Range(0, n)).ToArray();
        int[] tokenTypes = positions.Select(p => p < 3 ? 0 : 1).ToArray();
        ForwardBatch batch = Batch(ids, positions, lengths) with { TokenTypeIds = typeIds ? tokenTypes : null };

        using var host = new HostTensors(1);
        using var gpu = new CudaBackend(Gpu.Device, dtype);
        Tensor w = gpu.LoadWeight(host.FromValues("words", words, vocab, hidden));
        Tensor? t = typeTable ? gpu.LoadWeight(host.FromValues("types", typeRows, types, hidden)) : null;
        Tensor p = gpu.LoadWeight(host.FromValues("positions", positionRows, maxPositions, hidden));
        Tensor output = gpu.Allocate("embedded", dtype, rows, hidden);
        gpu.BeginStep(batch);
        gpu.EncoderEmbedding(w, t, p, offset, output);
        float[] got = HostTensors.Read(gpu, output, rows);

        var expected = new float[rows * hidden];
        for (int r = 0; r < rows; r++)
        {
            int type = typeIds ? tokenTypes[r] : 0;
            for (int c = 0; c < hidden; c++)
            {
                float sum = words[ids[r] * hidden + c];
                if (typeTable)
                {
                    sum = Round(dtype, sum + typeRows[type * hidden + c]);
                }

                expected[r * hidden + c] = Round(dtype, sum + positionRows[(positions[r] + offset) * hidden + c]);
            }
        }

        // Two adds of values the dtype holds, each rounded once to it, are exact on both sides.
        Assert.Equal(expected, got);

        // What would read outside a table is refused on the host: a position past the table with the offset, a token type
        // past the type table, a token id past the vocabulary.
        gpu.BeginStep(batch with { Positions = [.. positions[..^1], maxPositions - offset] });
        Assert.Throws<ArgumentOutOfRangeException>(() => gpu.EncoderEmbedding(w, t, p, offset, output));
        if (typeTable)
        {
            gpu.BeginStep(batch with { TokenTypeIds = [.. tokenTypes[..^1], types] });
            Assert.Throws<ArgumentOutOfRangeException>(() => gpu.EncoderEmbedding(w, t, p, offset, output));
        }

        gpu.BeginStep(batch with { TokenIds = [.. ids[..^1], vocab] });
        Assert.Throws<ArgumentOutOfRangeException>(() => gpu.EncoderEmbedding(w, t, p, offset, output));
    }

    [Theory]
    [InlineData(4, 4, 32, DType.BF16, false)]     // MHA
    [InlineData(8, 2, 32, DType.BF16, false)]     // GQA 4
    [InlineData(4, 4, 64, DType.BF16, false)]
    [InlineData(16, 4, 64, DType.BF16, false)]
    [InlineData(16, 4, 64, DType.BF16, true)]     // over 256 rows: no split context
    [InlineData(12, 12, 64, DType.F16, false)]
    [InlineData(8, 2, 64, DType.F32, false)]      // the CUDA-core kernel (fp32 models)
    [InlineData(64, 2, 32, DType.BF16, false)]    // GQA 32, wider than a tile: the CUDA-core kernel in bf16
    public void Bidirectional_attention_matches_the_reference(int heads, int kvHeads, int headDim, DType dtype, bool longStep)
    {
        const int window = 5;
        Gpu.Require();
        // Lengths 1 and 3 go to flash_decode (rows × group ≤ 16 for GQA ≤ 4), 17 and 70 to flash_attention (tiles of
        // 64 / group rows: several per sequence, the last one partial); 70 spans five 16-token blocks.
        int[] lengths = longStep ? [1, 3, 17, 70, 200] : [1, 3, 17, 70];
        const int blockSize = 16;
        int maxBlocks = (lengths.Max() + blockSize - 1) / blockSize;
        var causal = new AttentionSpec(heads, kvHeads, headDim, 1f / MathF.Sqrt(headDim), 0);
        AttentionSpec bidirectional = causal with { Causal = false };
        var noRope = new RopeSpec([], 0, 1f, 1);
        int width = (heads + 2 * kvHeads) * headDim;
        var random = new Random(heads * 100 + headDim + (longStep ? 7 : 0));

        using var host = new HostTensors(1);
        using var gpu = new CudaBackend(Gpu.Device, dtype);
        gpu.AllocateKvCache(1, 1 + lengths.Length * maxBlocks, blockSize, causal);

        // Step 1: the masks over the same q and cache, the bidirectional one twice around the causal and the windowed
        // one (EmbeddingGemma's sliding layers, |q − k| < 5: its keys are uploaded beside the whole sequences' at the
        // step's first call and must not disturb them). Step 2: the sequences in the other order with new values, so
        // positions left over from step 1 would be wrong.
        foreach (int[] step in (int[][])[lengths, [.. lengths.Reverse()]])
        {
            ForwardBatch batch = ForwardBatch.ForSequences(step.Select(n => (0, n)).ToArray(), maxBlocks, blockSize);
            int rows = batch.NumTokens;
            float[] qkv = Values(random, rows * width, -2f, 2f, dtype);
            gpu.BeginStep(batch);
            Tensor q = gpu.Allocate("q", dtype, rows, heads * headDim);
            gpu.PrepareAttention(0, gpu.LoadWeight(host.FromValues("qkv", qkv, rows, width)), rows, causal, noRope, null, null, 1e-6f, q);
            Tensor outBi = gpu.Allocate("bi", dtype, rows, heads * headDim), outCausal = gpu.Allocate("causal", dtype, rows, heads * headDim);
            Tensor outAgain = gpu.Allocate("again", dtype, rows, heads * headDim), outWindow = gpu.Allocate("window", dtype, rows, heads * headDim);
            gpu.Attention(0, q, outBi, bidirectional);
            gpu.Attention(0, q, outCausal, causal);
            gpu.Attention(0, q, outWindow, bidirectional with { SlidingWindow = window });
            gpu.Attention(0, q, outAgain, bidirectional);
            float[] gotBi = HostTensors.Read(gpu, outBi, rows), gotCausal = HostTensors.Read(gpu, outCausal, rows);
            float[] gotWindow = HostTensors.Read(gpu, outWindow, rows);
            Assert.Equal(gotBi, HostTensors.Read(gpu, outAgain, rows));

            double tolerance = dtype == DType.F32 ? 1e-5 : 1e-2;
            for (int s = 0; s < step.Length; s++)
            {
                int first = batch.QueryStartLoc[s], n = step[s];
                float[] refBi = ReferenceAttention(qkv, first, n, heads, kvHeads, headDim, causal.Scale, isCausal: false);
                float[] refCausal = ReferenceAttention(qkv, first, n, heads, kvHeads, headDim, causal.Scale, isCausal: true);
                float[] refWindow = ReferenceAttention(qkv, first, n, heads, kvHeads, headDim, causal.Scale, isCausal: false, window);
                int span = n * heads * headDim, at = first * heads * headDim;
                double errorBi = HostTensors.RelativeError(gotBi.AsSpan(at, span).ToArray(), refBi);
                double errorCausal = HostTensors.RelativeError(gotCausal.AsSpan(at, span).ToArray(), refCausal);
                double errorWindow = HostTensors.RelativeError(gotWindow.AsSpan(at, span).ToArray(), refWindow);
                Assert.True(errorBi < tolerance, $"bidirectional, sequence of {n}: relative error {errorBi}");
                Assert.True(errorCausal < tolerance, $"causal, sequence of {n}: relative error {errorCausal}");
                Assert.True(errorWindow < tolerance, $"bidirectional window {window}, sequence of {n}: relative error {errorWindow}");
                if (n > window)
                {
                    Assert.True(HostTensors.RelativeError(refBi, refWindow) > 10 * tolerance, $"sequence of {n}: the window changes nothing");
                }
                if (n >= 3)
                {
                    // The two masks really differ here, by far more than the tolerance: the test tells them apart.
                    Assert.True(HostTensors.RelativeError(refCausal, refBi) > 10 * tolerance, $"sequence of {n}: the masks agree");
                }
            }
        }
    }

    [Fact]
    public void Bidirectional_attention_refuses_partial_sequences()
    {
        Gpu.Require();
        const int blockSize = 16, heads = 4, headDim = 32;
        var spec = new AttentionSpec(heads, heads, headDim, 1f / MathF.Sqrt(headDim), 0) { Causal = false };
        using var gpu = new CudaBackend(Gpu.Device, DType.BF16);
        gpu.AllocateKvCache(1, 8, blockSize, spec);
        Tensor q = gpu.Allocate("q", DType.BF16, 8, heads * headDim), output = gpu.Allocate("o", DType.BF16, 8, heads * headDim);

        // 3 new tokens after 5 cached ones: the sequence is not whole in the step.
        gpu.BeginStep(ForwardBatch.ForSequences([(0, 2), (5, 3)], 2, blockSize));
        Assert.Throws<ArgumentException>(() => gpu.Attention(0, q, output, spec));

        gpu.BeginStep(ForwardBatch.ForSequences([(0, 2), (0, 3)], 2, blockSize));
        gpu.Attention(0, q, output, spec);   // whole sequences: accepted
    }

    /// <summary>
    /// Softmax attention in double of one sequence's rows (qkv rows first..first+n−1: q heads, then k, then v), over all of
    /// its keys or (causal) keys 0..i for row i; with a window W only keys less than W positions from the row. Output
    /// [n, heads, headDim].
    /// </summary>
    private static float[] ReferenceAttention(float[] qkv, int first, int n, int heads, int kvHeads, int headDim, float scale, bool isCausal, int window = 0)
    {
        int width = (heads + 2 * kvHeads) * headDim, group = heads / kvHeads;
        var output = new float[n * heads * headDim];
        var scores = new double[n];
        for (int i = 0; i < n; i++)
        {
            for (int h = 0; h < heads; h++)
            {
                int qAt = (first + i) * width + h * headDim, kvHead = h / group;
                int keys = isCausal ? i + 1 : n;
                double max = double.NegativeInfinity;
                for (int j = 0; j < keys; j++)
                {
                    if (window > 0 && Math.Abs(i - j) >= window)
                    {
                        scores[j] = double.NegativeInfinity;   // outside the window: weight e^−∞ = 0
                        continue;
                    }

                    int kAt = (first + j) * width + (heads + kvHead) * headDim;
                    double dot = 0;
                    for (int d = 0; d < headDim; d++)
                    {
                        dot += (double)qkv[qAt + d] * qkv[kAt + d];
                    }

                    scores[j] = dot * scale;
                    max = Math.Max(max, scores[j]);
                }

                double total = 0;
                for (int j = 0; j < keys; j++)
                {
                    scores[j] = Math.Exp(scores[j] - max);
                    total += scores[j];
                }

                for (int d = 0; d < headDim; d++)
                {
                    double acc = 0;
                    for (int j = 0; j < keys; j++)
                    {
                        acc += scores[j] * qkv[(first + j) * width + (heads + kvHeads + kvHead) * headDim + d];
                    }

                    output[(i * heads + h) * headDim + d] = (float)(acc / total);
                }
            }
        }

        return output;
    }

    /// <summary>Checks one row of LayerNorm output against the double-precision LayerNorm of the row's values.</summary>
    private static void CheckLayerNormRow(double[] values, float[] weight, float[] bias, ReadOnlySpan<float> got, DType dtype, string what)
    {
        int n = values.Length;
        double mean = values.Average(), variance = values.Sum(v => (v - mean) * (v - mean)) / n;
        double inv = 1 / Math.Sqrt(variance + Eps);
        for (int c = 0; c < n; c++)
        {
            // fp32 subtracts the mean from values of |x| and adds the bias: its error scales with those, not the result.
            double terms = (Math.Abs(values[c]) + Math.Abs(mean)) * inv * Math.Abs(weight[c]) + Math.Abs(bias[c]);
            CheckElement((values[c] - mean) * inv * weight[c] + bias[c], got[c], terms, dtype, $"{what} column {c}");
        }
    }

    /// <summary>See the class summary: one ulp of a 16-bit dtype plus 1e-6 of the terms, or 1e-6 of the terms in fp32.</summary>
    private static void CheckElement(double reference, float got, double terms, DType dtype, string what)
    {
        double expected = dtype == DType.F32 ? reference : Round(dtype, reference);
        double allowed = (dtype == DType.F32 ? 0 : Ulp(dtype, expected)) + 1e-6 * terms;
        Assert.True(Math.Abs(got - expected) <= allowed, $"{what}: got {got}, expected {expected} (allowed {allowed:g3})");
    }

    /// <summary>Hidden states: per row an offset (±3; row 1 at −60, a dimension-dominated state) plus ±2 of spread.</summary>
    private static float[] HiddenStates(Random random, int rows, int hidden, DType dtype)
    {
        var x = new float[rows * hidden];
        for (int r = 0; r < rows; r++)
        {
            double offset = r == 1 ? -60 : random.NextDouble() * 6 - 3;
            for (int c = 0; c < hidden; c++)
            {
                x[r * hidden + c] = NonZero(Round(dtype, offset + random.NextDouble() * 4 - 2), dtype);
            }
        }

        return x;
    }

    /// <summary>Uniform values in [lo, hi], rounded to the dtype (so loading them is exact), never zero.</summary>
    private static float[] Values(Random random, int count, float lo, float hi, DType dtype) =>
        Enumerable.Range(0, count).Select(_ => NonZero(Round(dtype, lo + random.NextDouble() * (hi - lo)), dtype)).ToArray();

    private static float NonZero(float v, DType dtype) => v != 0 ? v : Round(dtype, 0.375);

    private static float Round(DType dtype, double value) => dtype switch
    {
        DType.F32 => (float)value,
        DType.F16 => (float)(Half)(float)value,
        DType.BF16 => HalfConversions.Bf16ToFloat(HalfConversions.FloatToBf16((float)value)),
        _ => throw new NotSupportedException(dtype.ToString()),
    };

    /// <summary>One ulp of the dtype at |v| (subnormals: the smallest normal's).</summary>
    private static double Ulp(DType dtype, double v)
    {
        (int mantissa, int minExponent) = dtype switch
        {
            DType.F16 => (10, -14),
            DType.BF16 => (7, -126),
            _ => (23, -126),
        };
        int exponent = v == 0 ? minExponent : Math.Max(minExponent, (int)Math.Floor(Math.Log2(Math.Abs(v))));
        return Math.ScaleB(1, exponent - mantissa);
    }

    /// <summary>
    /// erfc in double (.NET has no erf): 1 − the Maclaurin series of erf below 3 (its terms stay under ~1e3, so ~1e-13 is
    /// left), the continued fraction e^(−z²)/√π · 1/(z + ½/(z + 1/(z + 3/2/(z + …)))) from 3 on, where it converges fast.
    /// </summary>
    private static double Erfc(double z)
    {
        if (z < 0)
        {
            return 2 - Erfc(-z);
        }

        if (z < 3)
        {
            double term = z, sum = z, z2 = z * z;
            for (int n = 1; n < 200 && Math.Abs(term) > 1e-17 * Math.Abs(sum); n++)
            {
                term *= -z2 / n;
                sum += term / (2 * n + 1);
            }

            return 1 - 2 / Math.Sqrt(Math.PI) * sum;
        }

        double f = z;
        for (int k = 60; k >= 1; k--)
        {
            f = z + k / 2.0 / f;
        }

        return Math.Exp(-z * z) / Math.Sqrt(Math.PI) / f;
    }

    private static ForwardBatch Batch(int[] tokenIds, int[] positions, int[] lengths) => new()
    {
        TokenIds = tokenIds,
        Positions = positions,
        SlotMapping = Enumerable.Repeat(-1, tokenIds.Length).ToArray(),
        QueryStartLoc = [0, .. lengths.Select((_, i) => lengths.Take(i + 1).Sum())],
        SeqLens = lengths,
        BlockTables = new int[lengths.Length],
        MaxBlocksPerSeq = 1,
        LogitsRows = [],
    };
}
