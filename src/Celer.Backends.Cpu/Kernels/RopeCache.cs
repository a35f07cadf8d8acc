namespace Celer.Backends.Cpu.Kernels;

/// <summary>
/// cos/sin of every position up to <see cref="MaxPositions"/>, [position][rotaryDim/2] each, built once from
/// inv_freq exactly as <see cref="Rope.Apply(float*, int, int, int, int, int*, float*, float)"/> computes them
/// per token, so cached and uncached rotation give identical bits.
/// </summary>
public sealed unsafe class RopeCache
{
    // Pinned so the kernels can hand out raw pointers into them.
    private readonly float[] _cos;
    private readonly float[] _sin;

    public RopeCache(ReadOnlySpan<float> invFreq, int maxPositions, float attentionScaling)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(maxPositions);
        int half = invFreq.Length;
        RotaryDim = 2 * half;
        MaxPositions = maxPositions;
        _cos = GC.AllocateUninitializedArray<float>(maxPositions * half, pinned: true);
        _sin = GC.AllocateUninitializedArray<float>(maxPositions * half, pinned: true);
        if (half == 0)
        {
            return;
        }

        fixed (float* frequencies = invFreq)
        {
            for (int p = 0; p < maxPositions; p++)
            {
                Rope.ComputeCosSin(p, frequencies, attentionScaling, half, Cos(p), Sin(p));
            }
        }
    }

    public int RotaryDim { get; }

    public int MaxPositions { get; }

    /// <summary>The rotaryDim/2 cosines of <paramref name="position"/>.</summary>
    public float* Cos(int position) => (float*)System.Runtime.CompilerServices.Unsafe.AsPointer(ref _cos[position * (RotaryDim / 2)]);

    /// <summary>The rotaryDim/2 sines of <paramref name="position"/>.</summary>
    public float* Sin(int position) => (float*)System.Runtime.CompilerServices.Unsafe.AsPointer(ref _sin[position * (RotaryDim / 2)]);
}
