using Celer.Backends.Cpu.Kernels;
using Xunit;

namespace Celer.Backends.Cpu.Tests.Kernels;

public unsafe class RopeTests
{
    public static TheoryData<int, int, int> Shapes => new()
    {
        // (numHeads, headDim, rotaryDim): Llama/Qwen head dims, an odd-width 80, partial rotary, a tiny head.
        { 4, 64, 64 }, { 3, 80, 80 }, { 2, 128, 128 }, { 5, 128, 64 }, { 1, 2, 2 }, { 2, 48, 24 },
    };

    [Theory]
    [MemberData(nameof(Shapes))]
    public void Apply_IsBitwiseTheScalarReference(int numHeads, int headDim, int rotaryDim)
    {
        var random = new Random((numHeads * 1000) + headDim + rotaryDim);
        // Enough tokens to take the parallel path; positions up to 32K exercise large angles.
        const int numTokens = 67;
        int[] positions = Enumerable.Range(0, numTokens).Select(_ => random.Next(32768)).ToArray();
        positions[0] = 0;
        float[] invFreq = InvFreq(rotaryDim, 1_000_000f);
        const float scaling = 0.9f;
        float[] input = TestData.Floats(random, (long)numTokens * numHeads * headDim);
        float[] vectorized = (float[])input.Clone();
        float[] scalar = (float[])input.Clone();
        fixed (float* pv = vectorized, ps = scalar, pf = invFreq)
        fixed (int* pp = positions)
        {
            Rope.Apply(pv, numTokens, numHeads, headDim, rotaryDim, pp, pf, scaling);
            Rope.ApplyReference(ps, numTokens, numHeads, headDim, rotaryDim, pp, pf, scaling);
        }

        Assert.Equal(scalar, vectorized);

        // Against the formula in double, from the same fp32 angles: only the final fp32 roundings differ.
        var exact = new double[input.Length];
        int half = rotaryDim / 2;
        for (int t = 0; t < numTokens; t++)
        {
            for (int h = 0; h < numHeads; h++)
            {
                int head = ((t * numHeads) + h) * headDim;
                for (int i = 0; i < headDim; i++)
                {
                    exact[head + i] = input[head + i];
                }

                for (int i = 0; i < half; i++)
                {
                    double angle = (float)positions[t] * invFreq[i];
                    double cos = Math.Cos(angle) * scaling, sin = Math.Sin(angle) * scaling;
                    exact[head + i] = (input[head + i] * cos) - (input[head + i + half] * sin);
                    exact[head + i + half] = (input[head + i + half] * cos) + (input[head + i] * sin);
                }
            }
        }

        // |x| < 1 so outputs are < √2; fp32 cos/sin and three roundings stay below 1e-6 absolute.
        TestData.AssertClose(exact, vectorized, 0, 1e-6);
    }

    [Fact]
    public void Apply_AtPositionZero_ScalesOnly()
    {
        float[] x = [0.5f, -0.25f, 0.75f, 1f];
        int[] positions = [0];
        float[] invFreq = InvFreq(4, 10000f);
        fixed (float* px = x, pf = invFreq)
        fixed (int* pp = positions)
        {
            Rope.Apply(px, 1, 1, 4, 4, pp, pf, 2f);
        }

        Assert.Equal([1f, -0.5f, 1.5f, 2f], x);
    }

    [Theory]
    [InlineData(4, 128, new[] { 16, 24, 24 })]   // Qwen2-VL-7B's M-RoPE
    [InlineData(3, 16, new[] { 2, 3, 3 })]
    [InlineData(2, 80, new[] { 20, 20 })]        // a Qwen vision tower's (row, column) of head_dim 80
    public void Apply_WithSections_RotatesEachPairByItsAxisPosition(int numHeads, int headDim, int[] sections)
    {
        var random = new Random(headDim + sections.Length);
        const int numTokens = 41;
        int axes = sections.Length;
        int[] axisPositions = Enumerable.Range(0, numTokens * axes).Select(_ => random.Next(4096)).ToArray();
        float[] invFreq = InvFreq(headDim, 1_000_000f);
        float[] input = TestData.Floats(random, (long)numTokens * numHeads * headDim);
        float[] rotated = (float[])input.Clone();
        fixed (float* pr = rotated, pf = invFreq)
        fixed (int* pp = axisPositions)
        {
            Rope.Apply(pr, numTokens, numHeads, headDim, headDim, pp, sections, pf, 1f);
        }

        // Each pair as the one-axis rotation by its section's axis would leave it: rotate a copy of the token by every
        // axis's position and take each section from its axis's copy, as transformers takes cos and sin.
        int half = headDim / 2;
        var expected = new float[input.Length];
        for (int t = 0; t < numTokens; t++)
        {
            for (int axis = 0, first = 0; axis < axes; first += sections[axis], axis++)
            {
                float[] token = input.AsSpan(t * numHeads * headDim, numHeads * headDim).ToArray();
                int[] position = [axisPositions[(t * axes) + axis]];
                fixed (float* pt = token, pf = invFreq)
                fixed (int* pp = position)
                {
                    Rope.ApplyReference(pt, 1, numHeads, headDim, headDim, pp, pf, 1f);
                }

                for (int h = 0; h < numHeads; h++)
                {
                    for (int i = first; i < first + sections[axis]; i++)
                    {
                        int at = (h * headDim) + i, to = (t * numHeads * headDim) + at;
                        expected[to] = token[at];
                        expected[to + half] = token[at + half];
                    }
                }
            }
        }

        Assert.Equal(expected, rotated);
    }

    [Fact]
    public void Apply_WithSections_ThatDoNotCoverTheRotation_Throws()
    {
        float[] x = new float[16];
        int[] positions = new int[3];
        float[] invFreq = InvFreq(16, 10000f);
        fixed (float* px = x, pf = invFreq)
        fixed (int* pp = positions)
        {
            float* qk = px, freq = pf;
            int* axis = pp;
            Assert.Throws<ArgumentException>(() => Rope.Apply(qk, 1, 1, 16, 16, axis, [2, 3, 2], freq, 1f));
        }
    }

    /// <summary>HF's default inv_freq: 1 / base^(2i/d), computed in fp32 as transformers does.</summary>
    private static float[] InvFreq(int rotaryDim, float theta)
        => Enumerable.Range(0, rotaryDim / 2).Select(i => 1f / MathF.Pow(theta, (2 * i) / (float)rotaryDim)).ToArray();
}
