using System.Runtime.Intrinsics;

namespace Celer.Backends.Cpu.Kernels;

/// <summary>
/// Rotary position embedding, neox style (HF <c>rotate_half</c>): dimension i pairs with i + rotaryDim/2,
/// out[i] = x[i]·cos − x[i+half]·sin and out[i+half] = x[i+half]·cos + x[i]·sin, where
/// cos/sin are of the fp32 product <c>(float)position · invFreq[i]</c> and scaled by attention_scaling,
/// as transformers' rotary embedding builds them. Dimensions from rotaryDim to headDim pass through
/// (partial rotary). Products and sums are separate roundings, like torch's <c>q * cos + rotate_half(q) * sin</c>.
/// </summary>
public static unsafe class Rope
{
    /// <summary>Rotated elements per task.</summary>
    private const long MinElementsPerTask = 32 * 1024;

    /// <summary>Rotates qOrK [numTokens, numHeads, headDim] in place, computing cos/sin per token.</summary>
    public static void Apply(float* qOrK, int numTokens, int numHeads, int headDim, int rotaryDim, int* positions, float* invFreq, float attentionScaling) =>
        Apply(qOrK, numTokens, numHeads, headDim, rotaryDim, positions, null, invFreq, attentionScaling);

    /// <summary>
    /// Multi-axis RoPE (M-RoPE): frequency pairs [0, sections[0]) rotate by the token's position on axis 0, the next
    /// sections[1] by axis 1, and so on; <paramref name="axisPositions"/> holds sections.Length positions per token.
    /// With <paramref name="sections"/> null, <paramref name="axisPositions"/> is one position per token (<see cref="Apply(float*, int, int, int, int, int*, float*, float)"/>).
    /// </summary>
    public static void Apply(float* qOrK, int numTokens, int numHeads, int headDim, int rotaryDim, int* axisPositions, int[]? sections, float* invFreq, float attentionScaling)
    {
        Validate(numTokens, numHeads, headDim, rotaryDim);
        if (sections is not null && sections.Sum() != rotaryDim / 2)
        {
            throw new ArgumentException($"RoPE sections [{string.Join(", ", sections)}] must add up to rotaryDim / 2 = {rotaryDim / 2}.", nameof(sections));
        }

        if (numTokens == 0 || numHeads == 0 || rotaryDim == 0)
        {
            return;
        }

        fixed (int* sectionSizes = sections)
        {
            var loop = new RopeLoop
            {
                QOrK = qOrK, NumTokens = numTokens, NumHeads = numHeads, HeadDim = headDim, Half = rotaryDim / 2,
                Positions = axisPositions, Sections = sectionSizes, Axes = sections?.Length ?? 1, InvFreq = invFreq, AttentionScaling = attentionScaling,
                Chunks = KernelScheduling.ChunkCount((long)numTokens * numHeads * rotaryDim, MinElementsPerTask, numTokens),
            };
            KernelScheduling.For(loop.Chunks, ref loop);
        }
    }

    private struct RopeLoop : IChunkLoop
    {
        public float* QOrK, InvFreq;
        public int* Positions, Sections;   // Sections null: one axis over all pairs
        public int NumTokens, NumHeads, HeadDim, Half, Axes, Chunks;
        public float AttentionScaling;

        public readonly void Run(int chunk)
        {
            var (start, end) = KernelScheduling.Range(chunk, Chunks, NumTokens);
            float* cos = ThreadScratch.Floats(2 * Half);
            float* sin = cos + Half;
            for (int t = start; t < end; t++)
            {
                for (int axis = 0, first = 0; axis < Axes; axis++)
                {
                    int count = Sections == null ? Half : Sections[axis];
                    ComputeCosSin((float)Positions[(t * Axes) + axis], InvFreq + first, AttentionScaling, count, cos + first, sin + first);
                    first += count;
                }

                RotateHeads(QOrK + ((long)t * NumHeads * HeadDim), NumHeads, HeadDim, Half, cos, sin);
            }
        }
    }

    /// <summary>Scalar definition of <see cref="Apply(float*, int, int, int, int, int*, float*, float)"/>.</summary>
    public static void ApplyReference(float* qOrK, int numTokens, int numHeads, int headDim, int rotaryDim, int* positions, float* invFreq, float attentionScaling)
    {
        int half = rotaryDim / 2;
        for (int t = 0; t < numTokens; t++)
        {
            for (int h = 0; h < numHeads; h++)
            {
                float* head = qOrK + ((((long)t * numHeads) + h) * headDim);
                for (int i = 0; i < half; i++)
                {
                    float angle = (float)positions[t] * invFreq[i];
                    float cos = MathF.Cos(angle) * attentionScaling;
                    float sin = MathF.Sin(angle) * attentionScaling;
                    float x1 = head[i];
                    float x2 = head[i + half];
                    head[i] = (x1 * cos) - (x2 * sin);
                    head[i + half] = (x2 * cos) + (x1 * sin);
                }
            }
        }
    }

    /// <summary>cos/sin of (float)position · invFreq[i] in fp32, times the scaling.</summary>
    private static void ComputeCosSin(float position, float* invFreq, float attentionScaling, int half, float* cos, float* sin)
    {
        for (int i = 0; i < half; i++)
        {
            float angle = position * invFreq[i];
            cos[i] = MathF.Cos(angle) * attentionScaling;
            sin[i] = MathF.Sin(angle) * attentionScaling;
        }
    }

    private static void RotateHeads(float* token, int numHeads, int headDim, int half, float* cos, float* sin)
    {
        for (int h = 0; h < numHeads; h++)
        {
            float* x1 = token + ((long)h * headDim);
            float* x2 = x1 + half;
            int i = 0;
            if (Vector512.IsHardwareAccelerated)
            {
                for (; i <= half - Vector512<float>.Count; i += Vector512<float>.Count)
                {
                    var a = Vector512.Load(x1 + i);
                    var b = Vector512.Load(x2 + i);
                    var c = Vector512.Load(cos + i);
                    var s = Vector512.Load(sin + i);
                    ((a * c) - (b * s)).Store(x1 + i);
                    ((b * c) + (a * s)).Store(x2 + i);
                }
            }

            if (Vector256.IsHardwareAccelerated)
            {
                for (; i <= half - Vector256<float>.Count; i += Vector256<float>.Count)
                {
                    var a = Vector256.Load(x1 + i);
                    var b = Vector256.Load(x2 + i);
                    var c = Vector256.Load(cos + i);
                    var s = Vector256.Load(sin + i);
                    ((a * c) - (b * s)).Store(x1 + i);
                    ((b * c) + (a * s)).Store(x2 + i);
                }
            }

            if (Vector128.IsHardwareAccelerated)
            {
                for (; i <= half - Vector128<float>.Count; i += Vector128<float>.Count)
                {
                    var a = Vector128.Load(x1 + i);
                    var b = Vector128.Load(x2 + i);
                    var c = Vector128.Load(cos + i);
                    var s = Vector128.Load(sin + i);
                    ((a * c) - (b * s)).Store(x1 + i);
                    ((b * c) + (a * s)).Store(x2 + i);
                }
            }

            for (; i < half; i++)
            {
                float a = x1[i];
                float b = x2[i];
                x1[i] = (a * cos[i]) - (b * sin[i]);
                x2[i] = (b * cos[i]) + (a * sin[i]);
            }
        }
    }

    private static void Validate(int numTokens, int numHeads, int headDim, int rotaryDim)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(numTokens);
        ArgumentOutOfRangeException.ThrowIfNegative(numHeads);
        ArgumentOutOfRangeException.ThrowIfNegative(rotaryDim);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(rotaryDim, headDim);
        if (rotaryDim % 2 != 0)
        {
            throw new ArgumentOutOfRangeException(nameof(rotaryDim), rotaryDim, "The rotary dimension must be even.");
        }
    }
}
