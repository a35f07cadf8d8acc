namespace Celer.Backends.Cpu.Tests.Kernels;

/// <summary>Row lengths 0..257: every SIMD tail (16, 8, 4 lanes) on both sides of each vector width.</summary>
internal static class ElementwiseTestSizes
{
    public static IEnumerable<int> Lengths => Enumerable.Range(0, 258);
}
