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
}
