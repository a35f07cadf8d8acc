using Celer.Backends.Cpu.Kernels;
using Celer.Models.Backend;
using Celer.Models.Quantization;
using Celer.Models.Weights;
using Celer.TestSupport;
using Xunit;

namespace Celer.Backends.Cpu.Tests.Kernels;

/// <summary>
/// The packed 4-bit and byte-per-code 8-bit linear layers (<see cref="MatMul.RunInt4"/>, <see cref="MatMul.RunInt8"/>, and <see cref="CpuBackend"/>'s loading and act-order
/// gather around it) against a double-precision product with the exactly dequantized weight, on random codes, zero
/// points and scales: the GEMV rows (1–3) and the dequantize-then-GEMM rows past them, groups of 8 to 128 columns and per
/// channel, widths whose words end in a partial 32-byte vector, act-order columns, stacked parts and a bias. The
/// dequantized weights are exact in fp32, so only summation order differs (1e-5 of Σ|x·w|, as <see cref="MatMulTests"/>);
/// a code or a group read from the wrong place is off by the weight's whole range. The AVX2 and scalar dequantizations
/// are compared value for value.
/// </summary>
public sealed unsafe class IntMatMulTests
{
    private const double Tolerance = 1e-5;

    /// <summary>
    /// MoE experts on the CPU (<see cref="CpuBackend.LoadExperts"/>): 4- and 8-bit codes in stored column order stay
    /// packed (per channel and in groups), act-order ones are dequantized into the stacked fp32 weight; either way
    /// <see cref="IModelBackend.MoeExperts"/> computes what it computes on the exactly dequantized values (fp32 summation
    /// order apart), at a decode step's rows (the codes' dot products) and at more (each expert's rows dequantized).
    /// </summary>
    [Theory]
    [InlineData(4, 32, false, true)]
    [InlineData(4, 0, false, true)]
    [InlineData(8, 16, false, true)]
    [InlineData(4, 16, true, false)]
    [InlineData(8, 16, true, false)]
    public void Experts_keep_their_codes_unless_act_ordered(int bits, int groupSize, bool actOrder, bool packed)
    {
        const int hidden = 64, intermediate = 32, experts = 4, topK = 2, capacity = 40;
        var random = new Random(bits + groupSize + (actOrder ? 1 : 0));
        int[]? HiddenOrder() => actOrder ? RandomIntWeights.ActOrder(random, hidden, groupSize) : null;
        int[]? InterOrder() => actOrder ? RandomIntWeights.ActOrder(random, intermediate, groupSize) : null;
        IntWeights[] gateUp = [.. Enumerable.Range(0, 2 * experts).Select(_ => RandomIntWeights.Create(random, intermediate, hidden, bits, groupSize, HiddenOrder()))];
        IntWeights[] down = [.. Enumerable.Range(0, experts).Select(_ => RandomIntWeights.Create(random, hidden, intermediate, bits, groupSize, InterOrder()))];
        WeightTensor[] Packed(IntWeights[] w) => [.. w.Select((q, i) => new WeightTensor($"e{i}", DType.I32, [q.Rows, q.Columns], 0, 0) { Packed = q })];
        float[] x = [.. Enumerable.Range(0, capacity * hidden).Select(_ => (float)(random.NextDouble() * 2 - 1))];
        float[] logits = [.. Enumerable.Range(0, capacity * experts).Select(_ => (float)(random.NextDouble() * 4 - 2))];

        using var backend = new CpuBackend(DType.F32);
        IModelBackend b = backend;
        Tensor codes = b.LoadExperts("gate_up", Packed(gateUp)), codesDown = b.LoadExperts("down", Packed(down));
        Assert.Equal(packed, (bits == 4 ? codes.Int4 : (object?)codes.Int8) is not null);
        Tensor values = Dense(b, "gate_up", gateUp), valuesDown = Dense(b, "down", down);
        fixed (float* xp = x, lp = logits)
        {
            var input = new Tensor("x", (nint)xp, DType.F32, [capacity, hidden]);
            var router = new Tensor("logits", (nint)lp, DType.F32, [capacity, experts]);
            Tensor got = b.Allocate("got", DType.F32, capacity, hidden), want = b.Allocate("want", DType.F32, capacity, hidden);
            foreach (int rows in new[] { 1, 3, capacity })   // every expert's rows through the dot products, then dequantized
            {
                b.MoeExperts(input, rows, router, topK, true, codes, codesDown, got);
                b.MoeExperts(input, rows, router, topK, true, values, valuesDown, want);
                float[] g = new float[rows * hidden], w = new float[rows * hidden];
                backend.CopyToHost(got, rows, g);
                backend.CopyToHost(want, rows, w);
                for (int i = 0; i < g.Length; i++)
                {
                    Assert.True(Math.Abs(g[i] - w[i]) <= 1e-4 * (1 + Math.Abs(w[i])), $"{rows} rows: {i}: {g[i]} against {w[i]}");
                }
            }
        }
    }

    /// <summary>The parts' exactly dequantized values stacked as a dense weight (the backend copies them).</summary>
    private static Tensor Dense(IModelBackend backend, string name, IntWeights[] parts)
    {
        float[][] values = [.. parts.Select(RandomIntWeights.Dequantize)];
        var handles = values.Select(v => System.Runtime.InteropServices.GCHandle.Alloc(v, System.Runtime.InteropServices.GCHandleType.Pinned)).ToList();
        try
        {
            return backend.LoadStacked(name, [.. parts.Select((q, i) => new WeightTensor($"{name}.{i}", DType.F32, [q.Rows, q.Columns], handles[i].AddrOfPinnedObject(), values[i].Length * sizeof(float)))]);
        }
        finally
        {
            handles.ForEach(h => h.Free());
        }
    }

    [Theory]
    [InlineData(4, 64, "48", 16, false, false)]
    [InlineData(4, 176, "64,32,32", 16, true, true)]
    [InlineData(4, 512, "96", 0, false, true)]
    [InlineData(4, 264, "40", 8, true, false)]
    [InlineData(4, 1024, "24,8", 128, false, false)]
    [InlineData(8, 64, "48", 16, false, false)]
    [InlineData(8, 176, "64,32,32", 16, true, true)]
    [InlineData(8, 512, "96", 0, false, true)]
    [InlineData(8, 264, "40", 8, true, false)]
    public void Packed_linear_matches_the_dequantized_product(int bits, int k, string parts, int groupSize, bool actOrder, bool withBias)
    {
        var random = new Random(k + parts.Length + bits);
        int[]? groupIndex = actOrder ? RandomIntWeights.ActOrder(random, k, groupSize) : null;
        IntWeights[] weights = [.. parts.Split(',').Select(int.Parse).Select(rows => RandomIntWeights.Create(random, rows, k, bits, groupSize, groupIndex))];
        int n = weights.Sum(w => w.Rows);
        const int capacity = 70;
        float[] x = [.. Enumerable.Range(0, capacity * k).Select(_ => (float)(random.NextDouble() * 2 - 1))];
        float[] bias = [.. Enumerable.Range(0, n).Select(_ => (float)random.NextDouble())];
        float[] w = [.. weights.SelectMany(RandomIntWeights.Dequantize)];

        using var backend = new CpuBackend(DType.F32);
        Tensor weight = backend.LoadStacked("w", [.. weights.Select((q, i) => new WeightTensor($"w{i}", DType.I32, [q.Rows, k], 0, 0) { Packed = q })]);
        Assert.True(bits == 4 ? weight.Int4 is not null : weight.Int8 is not null && weight.DType == DType.U8);
        fixed (float* xp = x, bp = bias)
        {
            var input = new Tensor("x", (nint)xp, DType.F32, [capacity, k]);
            Tensor? b = withBias ? new Tensor("b", (nint)bp, DType.F32, [n]) : null;
            Tensor y = backend.Allocate("y", DType.F32, capacity, n);
            foreach (int m in new[] { 1, 2, 3, 4, 37, 70 })
            {
                backend.Linear(input, m, weight, b, y);
                float[] actual = new float[m * n];
                backend.CopyToHost(y, m, actual);
                for (int i = 0; i < m; i++)
                {
                    for (int j = 0; j < n; j++)
                    {
                        double exact = withBias ? bias[j] : 0, magnitude = Math.Abs(exact);
                        for (int p = 0; p < k; p++)
                        {
                            exact += (double)x[(i * k) + p] * w[(j * k) + p];
                            magnitude += Math.Abs((double)x[(i * k) + p] * w[(j * k) + p]);
                        }

                        Assert.True(Math.Abs(actual[(i * n) + j] - exact) <= Tolerance * magnitude, $"{m} rows: y[{i}, {j}] = {actual[(i * n) + j]}, exact {exact}");
                    }
                }
            }
        }
    }

    /// <summary>The kernels themselves in both tiers (AVX2, and the paths of a CPU without it) on one weight of each width.</summary>
    [Theory]
    [InlineData(4, true)]
    [InlineData(4, false)]
    [InlineData(8, true)]
    [InlineData(8, false)]
    public void Both_instruction_tiers_match_the_dequantized_product(int bits, bool vectorized)
    {
        var random = new Random((vectorized ? 11 : 12) + bits);
        const int k = 192, groupSize = 32, capacity = 9;
        IntWeights w = RandomIntWeights.Create(random, 40, k, bits, groupSize, null);
        uint[] words = bits == 4 ? IntWeights.PackCodes([w], null, (q, i) => (q * 8) + i) : [];
        byte[] bytes = bits == 8 ? IntWeights.StackBytes([w], null) : [];
        float[] pairs = IntWeights.ScalesAndZeros([w]);
        float[] x = [.. Enumerable.Range(0, capacity * k).Select(_ => (float)(random.NextDouble() * 2 - 1))];
        float[] weight = RandomIntWeights.Dequantize(w), y = new float[capacity * w.Rows], scratch = new float[w.Rows * k];
        fixed (uint* c = words)
        fixed (byte* b = bytes)
        fixed (float* sz = pairs, xp = x, yp = y, s = scratch)
        {
            foreach (int m in new[] { 1, 2, 3, 9 })
            {
                if (bits == 4)
                {
                    MatMul.RunInt4(xp, m, k, c, sz, w.Groups, groupSize, w.Rows, yp, null, s, vectorized);
                }
                else
                {
                    MatMul.RunInt8(xp, m, k, b, sz, w.Groups, groupSize, w.Rows, yp, null, s, vectorized);
                }

                for (int i = 0; i < m; i++)
                {
                    for (int j = 0; j < w.Rows; j++)
                    {
                        double exact = 0, magnitude = 0;
                        for (int p = 0; p < k; p++)
                        {
                            exact += (double)x[(i * k) + p] * weight[(j * k) + p];
                            magnitude += Math.Abs((double)x[(i * k) + p] * weight[(j * k) + p]);
                        }

                        Assert.True(Math.Abs(y[(i * w.Rows) + j] - exact) <= Tolerance * magnitude, $"{bits}-bit, vectorized {vectorized}, {m} rows: y[{i}, {j}] = {y[(i * w.Rows) + j]}, exact {exact}");
                    }
                }
            }
        }
    }

    [Fact]
    public void Vector_and_scalar_dequantization_agree_value_for_value()
    {
        var random = new Random(3);
        const int k = 200, groupSize = 40;
        uint[] codes = [.. Enumerable.Range(0, k / 8).Select(_ => (uint)random.NextInt64(1L << 32))];
        float[] pairs = [.. Enumerable.Range(0, k / groupSize).SelectMany(_ => new[] { (1 + random.Next(255)) / 4096f, random.Next(17) })];
        float[] vector = new float[k], scalar = new float[k];
        fixed (uint* c = codes)
        fixed (float* sz = pairs, v = vector, s = scalar)
        {
            MatMul.DequantizeRow<MatMul.Int4Codes>((byte*)c, sz, groupSize, k, v);
            MatMul.DequantizeEights<MatMul.Int4Codes>((byte*)c, sz, groupSize, 0, k / 8, s);
        }

        Assert.Equal(scalar, vector);
        Assert.Equal(((codes[0] >> 4) & 15) - pairs[1], vector[1] / pairs[0]);
    }

    [Fact]
    public void Vector_and_scalar_dequantization_of_bytes_agree_value_for_value()
    {
        var random = new Random(4);
        const int k = 200, groupSize = 40;
        byte[] codes = [.. Enumerable.Range(0, k).Select(_ => (byte)random.Next(256))];
        float[] pairs = [.. Enumerable.Range(0, k / groupSize).SelectMany(_ => new[] { (1 + random.Next(255)) / 4096f, random.Next(257) })];
        float[] vector = new float[k], scalar = new float[k];
        fixed (byte* c = codes)
        fixed (float* sz = pairs, v = vector, s = scalar)
        {
            MatMul.DequantizeRow<MatMul.Int8Codes>(c, sz, groupSize, k, v);
            MatMul.DequantizeEights<MatMul.Int8Codes>(c, sz, groupSize, 0, k / 8, s);
        }

        Assert.Equal(scalar, vector);
        Assert.Equal(codes[9] - pairs[1], vector[9] / pairs[0]);
        Assert.Equal(codes[47] - pairs[3], vector[47] / pairs[2]);
    }
}
