using Celer.Models.Config;

namespace Celer.Models.Rope;

/// <summary>
/// RoPE inverse frequencies exactly as transformers' <c>modeling_rope_utils.py</c> computes them.
/// transformers works on float32 tensors with Python-double scalars, and the rounding points matter:
/// a Python scalar meeting a float32 tensor is rounded to float32 first; <c>scalar / tensor</c> is
/// <c>tensor.reciprocal() * scalar</c> (torch's <c>__rtruediv__</c>); scalar-only arithmetic
/// (ratios, logs, the dynamic-NTK base) stays in double. Each step below names the tensor
/// expression it mirrors. The one remaining difference: <c>theta ** exponent</c> is rounded
/// correctly here, while torch's CPU <c>powf</c> (Sleef, 1 ulp) may land one ulp away.
/// </summary>
public static class RotaryEmbedding
{
    /// <summary>The table for a parsed config: its RoPE settings, head_dim and max_position_embeddings.</summary>
    public static RopeTable Compute(ModelConfig config, int seqLen)
    {
        ArgumentNullException.ThrowIfNull(config);
        return Compute(config.Rope, config.HeadDim, config.MaxPositionEmbeddings, seqLen);
    }

    /// <param name="p">RoPE settings from config.json.</param>
    /// <param name="headDim">Attention head size (<c>head_dim</c>, or hidden/heads).</param>
    /// <param name="maxPositionEmbeddings">config.json <c>max_position_embeddings</c>; dynamic NTK's reference length.</param>
    /// <param name="seqLen">Current sequence length; only dynamic NTK reads it, and only above <paramref name="maxPositionEmbeddings"/>.</param>
    public static RopeTable Compute(RopeParameters p, int headDim, int maxPositionEmbeddings, int seqLen)
    {
        ArgumentNullException.ThrowIfNull(p);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(headDim);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(maxPositionEmbeddings);
        int dim = (int)(headDim * p.PartialRotaryFactor); // Python int() truncates
        if (dim < 2 || dim % 2 != 0)
        {
            throw new ModelConfigException(
                $"rotary dimension {dim} (head_dim {headDim} x partial_rotary_factor {p.PartialRotaryFactor}) must be even and at least 2");
        }

        return p.RopeType switch
        {
            RopeType.Default => new RopeTable(DefaultInverseFrequencies(p.Theta, dim), 1f),
            RopeType.Linear => new RopeTable(Linear(p, dim), 1f),
            RopeType.Dynamic => new RopeTable(DynamicNtk(p, dim, maxPositionEmbeddings, seqLen), 1f),
            RopeType.Llama3 => new RopeTable(Llama3(p, dim, maxPositionEmbeddings), 1f),
            RopeType.Yarn => Yarn(p, dim, maxPositionEmbeddings),
            RopeType.LongRope => LongRope(p, dim, maxPositionEmbeddings, seqLen),
            _ => throw new ArgumentOutOfRangeException(nameof(p), p.RopeType, "unknown RoPE type"),
        };
    }

    /// <summary><c>1.0 / (base ** (torch.arange(0, dim, 2).float() / dim))</c>.</summary>
    private static float[] DefaultInverseFrequencies(double theta, int dim)
    {
        var inv = new float[dim / 2];
        for (int i = 0; i < inv.Length; i++)
        {
            inv[i] = 1f / PositionFrequency(theta, i, dim);
        }
        return inv;
    }

    /// <summary><c>base ** (arange(0, dim, 2).float() / dim)</c>: float32 exponent, float32 base, float32 result.</summary>
    private static float PositionFrequency(double theta, int i, int dim)
    {
        float exponent = (float)(2 * i) / dim;
        return (float)Math.Pow((float)theta, exponent);
    }

    /// <summary><c>inv_freq /= factor</c>.</summary>
    private static float[] Linear(RopeParameters p, int dim)
    {
        var inv = DefaultInverseFrequencies(p.Theta, dim);
        float factor = (float)p.Factor;
        for (int i = 0; i < inv.Length; i++)
        {
            inv[i] /= factor;
        }
        return inv;
    }

    /// <summary>
    /// <c>_compute_dynamic_ntk_parameters</c>: below <c>max_position_embeddings</c> this is default
    /// RoPE; above it theta becomes <c>theta * (factor * seq / max - (factor - 1)) ^ (dim / (dim - 2))</c>
    /// (in double), which the model recomputes as the sequence grows.
    /// </summary>
    private static float[] DynamicNtk(RopeParameters p, int dim, int maxPositionEmbeddings, int seqLen)
    {
        int seq = Math.Max(seqLen, maxPositionEmbeddings);
        double scaled = p.Factor * seq / maxPositionEmbeddings - (p.Factor - 1);
        double theta = p.Theta * Math.Pow(scaled, (double)dim / (dim - 2));
        return DefaultInverseFrequencies(theta, dim);
    }

    /// <summary><c>_compute_llama3_parameters</c>.</summary>
    private static float[] Llama3(RopeParameters p, int dim, int maxPositionEmbeddings)
    {
        var inv = DefaultInverseFrequencies(p.Theta, dim);
        double oldContextLen = p.OriginalMaxPositionEmbeddings ?? maxPositionEmbeddings;
        float lowFreqWavelen = (float)(oldContextLen / p.LowFreqFactor);
        float highFreqWavelen = (float)(oldContextLen / p.HighFreqFactor);
        float factor = (float)p.Factor;
        float twoPi = (float)(2 * Math.PI);
        float oldContext = (float)oldContextLen;
        float lowFreqFactor = (float)p.LowFreqFactor;
        float freqFactorSpan = (float)(p.HighFreqFactor - p.LowFreqFactor);

        for (int i = 0; i < inv.Length; i++)
        {
            float wavelen = 1f / inv[i] * twoPi; // 2 * math.pi / inv_freq
            if (wavelen > lowFreqWavelen)
            {
                inv[i] /= factor; // long wavelengths: fully interpolated
            }
            else if (!(wavelen < highFreqWavelen))
            {
                // Medium band: blend interpolated and original with a factor linear in 1/wavelen.
                float smooth = (1f / wavelen * oldContext - lowFreqFactor) / freqFactorSpan;
                inv[i] = (1f - smooth) * inv[i] / factor + smooth * inv[i];
            }
            // Short wavelengths (high frequencies) are kept as they are.
        }
        return inv;
    }

    /// <summary><c>_compute_yarn_parameters</c> (transformers 5: explicit factor, optional <c>truncate</c>).</summary>
    private static RopeTable Yarn(RopeParameters p, int dim, int maxPositionEmbeddings)
    {
        double factor = p.Factor;
        int original = p.OriginalMaxPositionEmbeddings ?? maxPositionEmbeddings;

        double attentionFactor = p.AttentionFactor
            ?? (p.Mscale is { } m && m != 0 && p.MscaleAllDim is { } mAll && mAll != 0
                ? YarnMscale(factor, m) / YarnMscale(factor, mAll)
                : YarnMscale(factor, 1.0));

        double low = CorrectionDim(p.BetaFast, dim, p.Theta, original);
        double high = CorrectionDim(p.BetaSlow, dim, p.Theta, original);
        if (p.Truncate)
        {
            low = Math.Floor(low);
            high = Math.Ceiling(high);
        }
        low = Math.Max(low, 0);
        high = Math.Min(high, dim - 1);
        if (low == high)
        {
            high += 0.001; // transformers: "Prevent singularity"
        }
        float rampLow = (float)low;
        float rampSpan = (float)(high - low);
        float factor32 = (float)factor;

        var inv = new float[dim / 2];
        for (int i = 0; i < inv.Length; i++)
        {
            float posFreq = PositionFrequency(p.Theta, i, dim);
            float extrapolation = 1f / posFreq;
            float interpolation = 1f / (factor32 * posFreq);
            float ramp = Math.Clamp((i - rampLow) / rampSpan, 0f, 1f);
            float extrapolationFactor = 1f - ramp;
            inv[i] = interpolation * (1f - extrapolationFactor) + extrapolation * extrapolationFactor;
        }
        return new RopeTable(inv, (float)attentionFactor);
    }

    /// <summary>
    /// <c>_compute_longrope_parameters</c>: <c>1.0 / (ext_factors * base ** (arange(0, dim, 2).float() / dim))</c> with
    /// the long factors once the sequence passes the original context, and an attention factor
    /// <c>sqrt(1 + ln(factor) / ln(original))</c> (1 when not extending) unless the config gives one.
    /// </summary>
    private static RopeTable LongRope(RopeParameters p, int dim, int maxPositionEmbeddings, int seqLen)
    {
        int original = p.OriginalMaxPositionEmbeddings ?? maxPositionEmbeddings;
        IReadOnlyList<double> factors = (seqLen > original ? p.LongFactor : p.ShortFactor)
            ?? throw new ModelConfigException("LongRoPE needs short_factor and long_factor");
        if (factors.Count != dim / 2)
        {
            throw new ModelConfigException($"LongRoPE factors: {factors.Count} given, the rotary dimension {dim} needs {dim / 2}");
        }

        var inv = new float[dim / 2];
        for (int i = 0; i < inv.Length; i++)
        {
            inv[i] = 1f / ((float)factors[i] * PositionFrequency(p.Theta, i, dim));
        }

        double attentionFactor = p.AttentionFactor
            ?? (p.Factor <= 1.0 ? 1.0 : Math.Sqrt(1 + Math.Log(p.Factor) / Math.Log(original)));
        return new RopeTable(inv, (float)attentionFactor);
    }

    /// <summary>YaRN's <c>get_mscale</c>: <c>0.1 * mscale * ln(scale) + 1</c>, or 1 when not extending.</summary>
    private static double YarnMscale(double scale, double mscale) =>
        scale <= 1 ? 1.0 : 0.1 * mscale * Math.Log(scale) + 1.0;

    /// <summary>YaRN's <c>find_correction_dim</c>: the dimension whose wavelength fits <paramref name="numRotations"/> times in the original context.</summary>
    private static double CorrectionDim(double numRotations, int dim, double theta, int originalMaxPositionEmbeddings) =>
        dim * Math.Log(originalMaxPositionEmbeddings / (numRotations * 2 * Math.PI)) / (2 * Math.Log(theta));
}
