using Celer.Backends.Cpu.Kernels;
using Celer.Models.Weights;
using Xunit;

namespace Celer.Backends.Cpu.Tests.Kernels;

/// <summary>
/// The CPU MoE kernel against a plain per-row reference in double precision: every row through its own top-k experts one
/// after another, no grouping, on random inputs, weights and router logits (fp32 weights, so only summation order and
/// the vectorized exp differ: 1e-5 relative).
/// </summary>
public unsafe class MixtureOfExpertsTests
{
    private const double RelativeTolerance = 1e-5;

    [Theory]
    [InlineData(1, 4, 1, true, 16, 8)]
    [InlineData(5, 8, 2, true, 24, 40)]
    [InlineData(70, 8, 2, false, 64, 33)]     // enough rows per expert for the packed GEMM
    [InlineData(9, 60, 4, false, 32, 16)]     // many experts, most of them idle
    [InlineData(3, 16, 16, true, 8, 8)]       // every expert chosen by every row
    public void Grouped_experts_match_a_per_row_reference(int rows, int experts, int topK, bool normalize, int hidden, int intermediate)
    {
        var random = new Random(rows * 31 + experts);
        float[] x = TestData.Floats(random, rows * hidden);
        float[] logits = [.. TestData.Floats(random, rows * experts).Select(v => 4 * v)];
        float[] gateUp = [.. TestData.Floats(random, (long)experts * 2 * intermediate * hidden).Select(v => 0.3f * v)];
        float[] down = [.. TestData.Floats(random, (long)experts * hidden * intermediate).Select(v => 0.3f * v)];
        var output = new float[rows * hidden];
        using var moe = new MixtureOfExperts();
        fixed (float* px = x, pl = logits, pg = gateUp, pd = down, po = output)
        {
            moe.Run(px, rows, hidden, pl, experts, topK, normalize, new((nint)pg, DType.F32), new((nint)pd, DType.F32), intermediate, po);
        }

        double[] expected = Reference(x, rows, hidden, logits, experts, topK, normalize, gateUp, down, intermediate);
        TestData.AssertClose(expected, output, RelativeTolerance, 1e-6, default, $"{rows} rows, {experts} experts, top {topK}");
    }

    /// <summary>
    /// gpt-oss's experts: each projection's bias added per expert, and the clamped SwiGLU, with a limit small enough that
    /// both clamps bite (the gate's from above, the up projection's on both sides).
    /// </summary>
    [Theory]
    [InlineData(1, 8, 2, 24, 16, 0.5f)]
    [InlineData(70, 8, 4, 64, 33, 0.8f)]
    [InlineData(5, 32, 4, 40, 24, 7f)]
    public void Biased_experts_with_the_clamped_swiglu_match_a_per_row_reference(int rows, int experts, int topK, int hidden, int intermediate, float limit)
    {
        var random = new Random(rows * 7 + experts);
        float[] x = TestData.Floats(random, rows * hidden);
        float[] logits = [.. TestData.Floats(random, rows * experts).Select(v => 4 * v)];
        float[] gateUp = [.. TestData.Floats(random, (long)experts * 2 * intermediate * hidden).Select(v => 0.5f * v)];
        float[] down = [.. TestData.Floats(random, (long)experts * hidden * intermediate).Select(v => 0.3f * v)];
        float[] gateUpBias = TestData.Floats(random, experts * 2 * intermediate), downBias = TestData.Floats(random, experts * hidden);
        var output = new float[rows * hidden];
        using var moe = new MixtureOfExperts();
        fixed (float* px = x, pl = logits, pg = gateUp, pd = down, po = output, pgb = gateUpBias, pdb = downBias)
        {
            moe.Run(px, rows, hidden, pl, experts, topK, true, new((nint)pg, DType.F32), new((nint)pd, DType.F32), intermediate, po, new MixtureOfExperts.Biased(pgb, pdb, limit));
        }

        double[] expected = Reference(x, rows, hidden, logits, experts, topK, true, gateUp, down, intermediate, (gateUpBias, downBias, limit));
        TestData.AssertClose(expected, output, RelativeTolerance, 1e-6, default, $"{rows} rows, {experts} experts, top {topK}, limit {limit}");
    }

    [Fact]
    public void Output_may_be_the_input_and_a_second_larger_step_reuses_nothing_stale()
    {
        const int hidden = 16, intermediate = 8, experts = 4, topK = 2;
        var random = new Random(5);
        float[] gateUp = TestData.Floats(random, experts * 2 * intermediate * hidden);
        float[] down = TestData.Floats(random, experts * hidden * intermediate);
        using var moe = new MixtureOfExperts();
        foreach (int rows in new[] { 3, 11, 2 })
        {
            float[] x = TestData.Floats(random, rows * hidden), logits = TestData.Floats(random, rows * experts);
            double[] expected = Reference(x, rows, hidden, logits, experts, topK, true, gateUp, down, intermediate);
            fixed (float* px = x, pl = logits, pg = gateUp, pd = down)
            {
                moe.Run(px, rows, hidden, pl, experts, topK, true, new((nint)pg, DType.F32), new((nint)pd, DType.F32), intermediate, px);
            }

            TestData.AssertClose(expected, x, RelativeTolerance, 1e-6, default, $"{rows} rows in place");
        }
    }

    [Fact]
    public void Routing_takes_the_lower_id_among_equal_probabilities_and_renormalizes()
    {
        float[] logits = [1f, 3f, 3f, 2f, /* row 2 */ 0f, 0f, 0f, 0f];
        int* ids = stackalloc int[4];
        float* weights = stackalloc float[4];
        fixed (float* pl = logits)
        {
            MixtureOfExperts.Route(pl, 2, 4, 2, normalize: true, ids, weights);
        }

        Assert.Equal([1, 2, 0, 1], new[] { ids[0], ids[1], ids[2], ids[3] });
        Assert.Equal(0.5f, weights[0], 6);
        Assert.Equal(0.5f, weights[2], 6);
    }

    /// <summary>
    /// A row of NaN logits (a diverged row, or padding attending to never-written memory) still routes to distinct valid
    /// experts, NaN ranking below every number, as the CUDA routing does: ids index the experts' weights.
    /// </summary>
    [Fact]
    public void Rows_with_nan_logits_route_to_distinct_valid_experts()
    {
        float[] logits = [float.NaN, float.NaN, float.NaN, float.NaN, /* row 2 */ float.NaN, 1f, float.NaN, 2f];
        int* ids = stackalloc int[4];
        float* weights = stackalloc float[4];
        fixed (float* pl = logits)
        {
            MixtureOfExperts.Route(pl, 2, 4, 2, normalize: false, ids, weights);
        }

        Assert.Equal([0, 1], new[] { ids[0], ids[1] });
        Assert.True(ids[2] != ids[3] && ids[2] is >= 0 and < 4 && ids[3] is >= 0 and < 4);
    }

    [Fact]
    public void Sigmoid_gated_add_matches_the_formula()
    {
        var random = new Random(9);
        const int rows = 3, hidden = 37;
        float[] x = TestData.Floats(random, rows * hidden), gate = [-2.5f, 0.3f, 4f], output = TestData.Floats(random, rows * hidden);
        double[] expected = [.. output.Select((v, i) => v + x[i] / (1 + Math.Exp(-gate[i / hidden])))];
        fixed (float* px = x, pg = gate, po = output)
        {
            MixtureOfExperts.AddSigmoidGated(px, pg, rows, hidden, po);
        }

        TestData.AssertClose(expected, output, 1e-6, 1e-7);
    }

    /// <param name="gptOss">gpt-oss's expert biases and SwiGLU limit (its modeling code's <c>_apply_gate</c>, α = 1.702).</param>
    private static double[] Reference(float[] x, int rows, int hidden, float[] logits, int experts, int topK, bool normalize,
        float[] gateUp, float[] down, int intermediate, (float[] GateUpBias, float[] DownBias, float Limit)? gptOss = null)
    {
        var result = new double[rows * hidden];
        for (int r = 0; r < rows; r++)
        {
            double max = Enumerable.Range(0, experts).Max(e => (double)logits[r * experts + e]);
            double[] p = [.. Enumerable.Range(0, experts).Select(e => Math.Exp(logits[r * experts + e] - max))];
            double total = p.Sum();
            int[] chosen = [.. Enumerable.Range(0, experts).OrderByDescending(e => p[e]).ThenBy(e => e).Take(topK)];
            double chosenSum = chosen.Sum(e => p[e] / total);
            foreach (int e in chosen)
            {
                double weight = p[e] / total / (normalize ? chosenSum : 1);
                var act = new double[intermediate];
                for (int i = 0; i < intermediate; i++)
                {
                    double g = 0, u = 0;
                    for (int k = 0; k < hidden; k++)
                    {
                        g += gateUp[((long)e * 2 * intermediate + i) * hidden + k] * (double)x[r * hidden + k];
                        u += gateUp[((long)e * 2 * intermediate + intermediate + i) * hidden + k] * (double)x[r * hidden + k];
                    }

                    if (gptOss is { } o)
                    {
                        g = Math.Min(g + o.GateUpBias[e * 2 * intermediate + i], o.Limit);
                        u = Math.Clamp(u + o.GateUpBias[e * 2 * intermediate + intermediate + i], -o.Limit, o.Limit);
                        act[i] = (u + 1) * g / (1 + Math.Exp(-1.702 * g));
                    }
                    else
                    {
                        act[i] = g / (1 + Math.Exp(-g)) * u;
                    }
                }

                for (int h = 0; h < hidden; h++)
                {
                    double d = gptOss is { } o ? o.DownBias[e * hidden + h] : 0;
                    for (int i = 0; i < intermediate; i++)
                    {
                        d += down[((long)e * hidden + h) * intermediate + i] * act[i];
                    }

                    result[r * hidden + h] += weight * d;
                }
            }
        }

        return result;
    }
}
