namespace Celer.Models.Rope;

/// <summary>
/// The output of a RoPE init function: the inverse frequencies of the rotated pairs and the factor
/// every cos/sin is multiplied by (YaRN's mscale; 1 for the other types). Rotation is NeoX style
/// (<c>rotate_half</c>): element <c>i</c> pairs with <c>i + RotaryDim/2</c>.
/// </summary>
public sealed record RopeTable(float[] InverseFrequencies, float AttentionScaling)
{
    /// <summary>Number of leading head dimensions that are rotated (twice the frequency count).</summary>
    public int RotaryDim => InverseFrequencies.Length * 2;

    /// <summary>
    /// vLLM's <c>cos_sin_cache</c> layout: row <c>p</c> holds <c>RotaryDim/2</c> cosines then as many
    /// sines of <c>p * inv_freq</c>, both scaled by <see cref="AttentionScaling"/>. The angle is a
    /// float32 product as in HF (<c>inv_freq @ position_ids</c> in float32); cos/sin are taken in
    /// double and rounded once, so they are within half an ulp of the exact value of that angle.
    /// </summary>
    public float[] CosSinCache(int numPositions)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(numPositions);
        int half = InverseFrequencies.Length;
        var cache = new float[checked(numPositions * 2 * half)];
        for (int p = 0; p < numPositions; p++)
        {
            var row = cache.AsSpan(p * 2 * half, 2 * half);
            for (int i = 0; i < half; i++)
            {
                float angle = p * InverseFrequencies[i];
                row[i] = (float)Math.Cos(angle) * AttentionScaling;
                row[half + i] = (float)Math.Sin(angle) * AttentionScaling;
            }
        }
        return cache;
    }
}
