using Celer.Engine;

namespace Celer.Engine.Tests.Sampling;

/// <summary>The vector kernels against plain loops on every length 0..257, so each vector width's tail is hit.</summary>
public class LogitsMathTests
{
    public static TheoryData<int> Lengths()
    {
        var data = new TheoryData<int>();
        for (int n = 0; n <= 257; n++)
            data.Add(n);
        return data;
    }

    private static float[] Row(int n) => LogprobsTests.RandomLogits(n, seed: 1000 + n, scale: 20f);

    [Theory]
    [MemberData(nameof(Lengths))]
    public void Kernels_match_scalar_references(int n)
    {
        var x = Row(n);

        Assert.Equal(n == 0 ? float.NegativeInfinity : x.Max(), LogitsMath.Max(x));
        if (n > 0)
            Assert.Equal(Array.IndexOf(x, x.Max()), LogitsMath.ArgMax(x));

        const float shift = 3.25f;
        double sumExp = x.Sum(v => (double)MathF.Exp(v - shift));
        Assert.Equal(sumExp, LogitsMath.SumExp(x, shift), Math.Max(1e-6 * sumExp, 1e-12));
        Assert.Equal(x.Sum(v => (double)v), LogitsMath.Sum(x), 1e-9);

        var exp = (float[])x.Clone();
        LogitsMath.ExpShiftedInPlace(exp, shift);
        for (int i = 0; i < n; i++)
            Assert.Equal(MathF.Exp(x[i] - shift), exp[i], 6e-7f * Math.Max(1f, exp[i]));   // Vector.Exp: within an ulp or two

        var divided = (float[])x.Clone();
        LogitsMath.DivideInPlace(divided, 0.7f);
        Assert.Equal(x.Select(v => v / 0.7f), divided);

        var zeroed = (float[])x.Clone();
        LogitsMath.ZeroBelow(zeroed, 1.5f);
        Assert.Equal(x.Select(v => v < 1.5f ? 0f : v), zeroed);
    }

    [Fact]
    public void ArgMax_takes_the_first_of_equal_maxima_across_vector_lanes()
    {
        var x = new float[100];
        Array.Fill(x, -1f);
        x[37] = 2f;
        x[13] = 2f;
        x[90] = 2f;
        Assert.Equal(13, LogitsMath.ArgMax(x));
    }
}
