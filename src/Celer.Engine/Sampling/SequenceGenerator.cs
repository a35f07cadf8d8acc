namespace Celer.Engine;

/// <summary>
/// The per-sequence random generator: xoshiro256** (Blackman &amp; Vigna, 2018) seeded through SplitMix64,
/// the seeding its authors recommend. Written out rather than using System.Random so a seed gives the
/// same tokens on every runtime version and platform, and the whole 64-bit seed is used.
/// </summary>
internal sealed class SequenceGenerator
{
    private ulong _s0, _s1, _s2, _s3;

    public SequenceGenerator(long seed)
    {
        ulong x = unchecked((ulong)seed);
        _s0 = SplitMix64(ref x);
        _s1 = SplitMix64(ref x);
        _s2 = SplitMix64(ref x);
        _s3 = SplitMix64(ref x);
    }

    public ulong NextUInt64()
    {
        ulong result = ulong.RotateLeft(_s1 * 5, 7) * 9;
        ulong t = _s1 << 17;
        _s2 ^= _s0;
        _s3 ^= _s1;
        _s1 ^= _s2;
        _s0 ^= _s3;
        _s2 ^= t;
        _s3 = ulong.RotateLeft(_s3, 45);
        return result;
    }

    /// <summary>Uniform in [0, 1) with 53 random bits.</summary>
    public double NextDouble() => (NextUInt64() >> 11) * (1.0 / (1UL << 53));

    internal static ulong SplitMix64(ref ulong state)
    {
        ulong z = state += 0x9E3779B97F4A7C15UL;
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
        return z ^ (z >> 31);
    }
}

/// <summary>
/// Seeds for sequences whose request set no <c>seed</c>: a SplitMix64 stream from the engine's global seed
/// (<c>--seed</c>), so an engine run is reproducible as a whole while unseeded requests still differ.
/// Thread-safe.
/// </summary>
public sealed class SeedSource
{
    private ulong _state;

    public SeedSource(long globalSeed) => _state = unchecked((ulong)globalSeed);

    /// <summary>A fresh seed for an unseeded sequence.</summary>
    public long NextSeed()
    {
        ulong state = Interlocked.Add(ref _state, 0x9E3779B97F4A7C15UL) - 0x9E3779B97F4A7C15UL;
        return unchecked((long)SequenceGenerator.SplitMix64(ref state));
    }

    /// <summary>
    /// The seed of sample <paramref name="sampleIndex"/> of a request: <c>seed + index</c> when the request
    /// set one (vLLM's child requests), else a fresh seed. vLLM reads seed -1 as "no seed".
    /// </summary>
    public long EffectiveSeed(long? requestSeed, int sampleIndex)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(sampleIndex);
        return requestSeed is { } seed && seed != -1 ? unchecked(seed + sampleIndex) : NextSeed();
    }
}
