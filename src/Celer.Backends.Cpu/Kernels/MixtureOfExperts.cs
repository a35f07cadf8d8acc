using System.Runtime.InteropServices;
using Celer.Models.Weights;

namespace Celer.Backends.Cpu.Kernels;

/// <summary>
/// A sparse mixture-of-experts MLP on the CPU (the spec is <see cref="Models.Backend.IModelBackend.MoeExperts"/>). Rows are
/// routed, then grouped by expert (a counting sort of the (row, slot) pairs), so that each expert runs one GEMM over
/// all the rows that chose it (a prefill reuses each expert's weights across its rows, as vLLM's fused MoE does), and
/// each row's results are summed with their routing weights.
/// </summary>
internal sealed unsafe class MixtureOfExperts : IDisposable
{
    private float* _gathered, _gateUp, _activated, _down;
    private int* _order, _positionOf, _ids;
    private float* _weights;
    private long _capacityPairs, _capacityHidden, _capacityIntermediate;

    /// <summary>
    /// Per row: softmax in fp32 of <paramref name="logits"/> ([rows, experts]), the <paramref name="topK"/> most probable
    /// experts (ties: the lower id) into <paramref name="ids"/> and their probabilities, renormalized to sum 1 when
    /// <paramref name="normalize"/>, into <paramref name="weights"/> (both [rows, topK]). A NaN logit ranks below every
    /// number (as on CUDA), so the ids are always distinct valid experts, whatever a diverged row holds.
    /// </summary>
    public static void Route(float* logits, int rows, int experts, int topK, bool normalize, int* ids, float* weights)
    {
        Span<float> probabilities = experts <= 512 ? stackalloc float[experts] : new float[experts];
        Span<bool> taken = experts <= 512 ? stackalloc bool[experts] : new bool[experts];
        for (int r = 0; r < rows; r++)
        {
            var row = new ReadOnlySpan<float>(logits + (long)r * experts, experts);
            System.Numerics.Tensors.TensorPrimitives.SoftMax(row, probabilities);
            taken.Clear();
            float sum = 0;
            for (int j = 0; j < topK; j++)
            {
                int best = -1;
                for (int e = 0; e < experts; e++)
                {
                    // Strictly greater: among equal probabilities the lowest id wins; a NaN never beats a number.
                    if (!taken[e] && (best < 0 || probabilities[e] > probabilities[best] || (float.IsNaN(probabilities[best]) && !float.IsNaN(probabilities[e]))))
                    {
                        best = e;
                    }
                }

                ids[r * topK + j] = best;
                weights[r * topK + j] = probabilities[best];
                sum += probabilities[best];
                taken[best] = true;
            }

            if (normalize)
            {
                for (int j = 0; j < topK; j++)
                {
                    weights[r * topK + j] /= sum;
                }
            }
        }
    }

    /// <summary>
    /// gpt-oss's experts (<see cref="Models.Backend.ExpertOptions"/>): fp32 biases of the gate/up projections
    /// ([experts·2·intermediate]) and the down projections ([experts·hidden]), and the clamped SwiGLU's limit.
    /// </summary>
    public readonly record struct Biased(nint GateUpBias, nint DownBias, float SwigluLimit)
    {
        public Biased(float* gateUpBias, float* downBias, float swigluLimit) : this((nint)gateUpBias, (nint)downBias, swigluLimit)
        {
        }
    }

    /// <summary>
    /// Every expert's projection stacked along the rows, expert 0 first, as the CPU keeps it: values of
    /// <paramref name="Type"/> (<paramref name="Bits"/> 0), or 4-bit codes 8 to a word or 8-bit codes a byte each
    /// (<see cref="MatMul.RunInt4"/>, <see cref="MatMul.RunInt8"/>) with a (scale, zero point) pair per row and group,
    /// whose products dequantize into <paramref name="Scratch"/> (an expert's rows × k floats) above the GEMV's rows.
    /// </summary>
    public readonly record struct StackedExperts(nint Data, DType Type, int Bits = 0, nint ScalesAndZeros = 0, int Groups = 0, int GroupSize = 0, nint Scratch = 0)
    {
        /// <summary>y[m, n] = x[m, k] · (rows <paramref name="first"/> … + n of the stacked weight)ᵀ.</summary>
        public void Multiply(float* x, int m, int k, long first, int n, float* y)
        {
            float* sz = (float*)ScalesAndZeros + (first * Groups * 2), scratch = (float*)Scratch;
            switch (Bits)
            {
                case 4:
                    MatMul.RunInt4(x, m, k, (uint*)((byte*)Data + (first * (k / 2))), sz, Groups, GroupSize, n, y, null, scratch);
                    break;
                case 8:
                    MatMul.RunInt8(x, m, k, (byte*)Data + (first * k), sz, Groups, GroupSize, n, y, null, scratch);
                    break;
                default:
                    MatMul.Run(x, m, k, (byte*)Data + (first * k * Type.ByteSize()), Type, n, y);
                    break;
            }
        }
    }

    /// <summary>
    /// output[r] = Σ_j weight[r, j] · down_e(silu(gate_e(x[r])) · up_e(x[r])); output may be x. With <paramref name="biased"/>
    /// (gpt-oss) each projection adds its expert's bias and the activation is the clamped SwiGLU.
    /// </summary>
    public void Run(float* x, int rows, int hidden, float* routerLogits, int experts, int topK, bool normalize,
        StackedExperts gateUp, StackedExperts down, int intermediate, float* output, Biased? biased = null)
    {
        int pairs = rows * topK;
        Reserve(pairs, hidden, intermediate);
        Route(routerLogits, rows, experts, topK, normalize, _ids, _weights);

        // Counting sort of the pairs by expert: _order[p] is the pair at sorted position p, _positionOf its inverse.
        Span<int> start = experts <= 1024 ? stackalloc int[experts + 1] : new int[experts + 1];
        start.Clear();
        for (int p = 0; p < pairs; p++)
        {
            start[_ids[p] + 1]++;
        }

        for (int e = 0; e < experts; e++)
        {
            start[e + 1] += start[e];
        }

        Span<int> next = experts <= 1024 ? stackalloc int[experts] : new int[experts];
        start[..experts].CopyTo(next);
        for (int p = 0; p < pairs; p++)
        {
            int at = next[_ids[p]]++;
            _order[at] = p;
            _positionOf[p] = at;
        }

        for (int at = 0; at < pairs; at++)
        {
            new ReadOnlySpan<float>(x + (long)(_order[at] / topK) * hidden, hidden).CopyTo(new Span<float>(_gathered + (long)at * hidden, hidden));
        }

        for (int e = 0; e < experts; e++)
        {
            int first = start[e], count = start[e + 1] - first;
            if (count > 0)
            {
                gateUp.Multiply(_gathered + (long)first * hidden, count, hidden, e * 2L * intermediate, 2 * intermediate, _gateUp + (long)first * 2 * intermediate);
            }
        }

        if (biased is { } b)
        {
            AddExpertBias(_gateUp, start, experts, 2 * intermediate, (float*)b.GateUpBias);
            Activation.ClampedSwiGlu(_gateUp, _activated, pairs, intermediate, b.SwigluLimit, Models.Backend.ExpertOptions.SwigluAlpha);
        }
        else
        {
            Activation.SiluMulFused(_gateUp, _activated, pairs, intermediate);
        }

        for (int e = 0; e < experts; e++)
        {
            int first = start[e], count = start[e + 1] - first;
            if (count > 0)
            {
                down.Multiply(_activated + (long)first * intermediate, count, intermediate, (long)e * hidden, hidden, _down + (long)first * hidden);
            }
        }

        if (biased is { } d)
        {
            AddExpertBias(_down, start, experts, hidden, (float*)d.DownBias);
        }

        for (int r = 0; r < rows; r++)
        {
            var sum = new Span<float>(output + (long)r * hidden, hidden);
            for (int j = 0; j < topK; j++)
            {
                int p = r * topK + j;
                var result = new ReadOnlySpan<float>(_down + (long)_positionOf[p] * hidden, hidden);
                if (j == 0)
                {
                    System.Numerics.Tensors.TensorPrimitives.Multiply(result, _weights[p], sum);
                }
                else
                {
                    System.Numerics.Tensors.TensorPrimitives.MultiplyAdd(result, _weights[p], sum, sum);
                }
            }
        }
    }

    /// <summary>Adds expert e's bias row (<paramref name="width"/> floats at e·width) to the rows of its run of sorted pairs.</summary>
    private static void AddExpertBias(float* rows, ReadOnlySpan<int> start, int experts, int width, float* bias)
    {
        for (int e = 0; e < experts; e++)
        {
            var expertBias = new ReadOnlySpan<float>(bias + (long)e * width, width);
            for (int at = start[e]; at < start[e + 1]; at++)
            {
                var row = new Span<float>(rows + (long)at * width, width);
                System.Numerics.Tensors.TensorPrimitives.Add(row, expertBias, row);
            }
        }
    }

    /// <summary>output[r, :] += sigmoid(gate[r]) · x[r, :] (Qwen2-MoE's gated shared expert).</summary>
    public static void AddSigmoidGated(float* x, float* gate, int rows, int hidden, float* output)
    {
        for (int r = 0; r < rows; r++)
        {
            float scale = 1f / (1f + MathF.Exp(-gate[r]));
            var sum = new Span<float>(output + (long)r * hidden, hidden);
            System.Numerics.Tensors.TensorPrimitives.MultiplyAdd(new ReadOnlySpan<float>(x + (long)r * hidden, hidden), scale, sum, sum);
        }
    }

    /// <summary>Grows the scratch buffers to a step's pairs; a step no larger than an earlier one allocates nothing.</summary>
    private void Reserve(int pairs, int hidden, int intermediate)
    {
        if (pairs <= _capacityPairs && hidden <= _capacityHidden && intermediate <= _capacityIntermediate)
        {
            return;
        }

        Dispose();
        _capacityPairs = Math.Max(pairs, _capacityPairs);
        _capacityHidden = Math.Max(hidden, _capacityHidden);
        _capacityIntermediate = Math.Max(intermediate, _capacityIntermediate);
        long n = _capacityPairs;
        _gathered = Floats(n * _capacityHidden);
        _down = Floats(n * _capacityHidden);
        _gateUp = Floats(n * 2 * _capacityIntermediate);
        _activated = Floats(n * _capacityIntermediate);
        _weights = Floats(n);
        _order = (int*)NativeMemory.Alloc((nuint)n, sizeof(int));
        _positionOf = (int*)NativeMemory.Alloc((nuint)n, sizeof(int));
        _ids = (int*)NativeMemory.Alloc((nuint)n, sizeof(int));
    }

    private static float* Floats(long count) => (float*)NativeMemory.AlignedAlloc((nuint)(count * sizeof(float)), 64);

    public void Dispose()
    {
        NativeMemory.AlignedFree(_gathered);
        NativeMemory.AlignedFree(_down);
        NativeMemory.AlignedFree(_gateUp);
        NativeMemory.AlignedFree(_activated);
        NativeMemory.AlignedFree(_weights);
        NativeMemory.Free(_order);
        NativeMemory.Free(_positionOf);
        NativeMemory.Free(_ids);
        _gathered = _down = _gateUp = _activated = _weights = null;
        _order = _positionOf = _ids = null;
    }
}
