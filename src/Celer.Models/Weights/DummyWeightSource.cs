using System.Runtime.InteropServices;

namespace Celer.Models.Weights;

/// <summary>
/// <c>--load-format dummy</c>: any requested tensor exists and holds random values, for
/// benchmarking and testing without a checkpoint. As vLLM's <c>initialize_dummy_weights</c>,
/// values are uniform in [-1e-3, 1e-3]; unlike vLLM, tensors whose name ends in
/// <c>norm.weight</c> are all ones (the init real RMSNorm weights start from), so activations keep
/// their scale through the layers and a random model still produces varied tokens instead of
/// collapsing to one. MXFP4 tensors (gpt-oss's experts: <c>*_blocks</c> codes, <c>*_scales</c> E8M0
/// exponents) are bytes whatever the dtype: random codes under scales of 2^-14 or 2^-13, so the values stay
/// within vLLM's range (|x| ≤ 6·2^-13 ≈ 7.3e-4). Values depend only on the seed and the tensor name, never on the order of
/// requests. Memory is native, 64-byte aligned, and freed on <see cref="Dispose"/>.
/// </summary>
public sealed unsafe class DummyWeightSource : IWeightSource
{
    /// <summary>vLLM's dummy-weight range (<c>low=-1e-3, high=1e-3</c>).</summary>
    public const float Range = 1e-3f;

    private const nuint Alignment = 64; // a cache line, and enough for any SIMD load width
    private readonly ulong _seed;
    private readonly bool _materialize;
    private readonly Dictionary<string, WeightTensor> _tensors = new(StringComparer.Ordinal);
    private readonly Lock _lock = new();
    private bool _disposed;

    /// <param name="materialize">
    /// False when the consumer generates the values itself from <see cref="WeightTensor.Synthetic"/> (a GPU makes
    /// 16 GB of them in a second, where one host thread takes half a minute); the tensors then hold no bytes.
    /// </param>
    public DummyWeightSource(DType dtype = DType.BF16, ulong seed = 0, bool materialize = true)
    {
        DType = dtype;
        _seed = seed;
        _materialize = materialize;
    }

    public DType DType { get; }

    /// <summary>Every name exists in a dummy checkpoint.</summary>
    public bool Contains(string name) => true;

    public WeightTensor Get(string name, params int[] expectedShape)
    {
        if (expectedShape.Length == 0)
        {
            throw new ModelLoadException($"dummy weights need the expected shape of tensor '{name}'");
        }
        lock (_lock)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            if (_tensors.TryGetValue(name, out var cached))
            {
                WeightShapes.Check(name, cached.Shape, expectedShape);
                return cached;
            }
            var tensor = Allocate(name, (int[])expectedShape.Clone());
            _tensors.Add(name, tensor);
            return tensor;
        }
    }

    public void Dispose()
    {
        lock (_lock)
        {
            if (_disposed)
            {
                return;
            }
            _disposed = true;
            foreach (var tensor in _tensors.Values)
            {
                if (tensor.Data != 0)
                {
                    NativeMemory.AlignedFree((void*)tensor.Data);
                }
            }
            _tensors.Clear();
        }
    }

    private WeightTensor Allocate(string name, int[] shape)
    {
        long elements = 1;
        foreach (int dim in shape)
        {
            ArgumentOutOfRangeException.ThrowIfNegative(dim, nameof(shape));
            elements = checked(elements * dim);
        }
        bool scales = name.EndsWith("_scales", StringComparison.Ordinal), mxfp4 = scales || name.EndsWith("_blocks", StringComparison.Ordinal);
        DType dtype = mxfp4 ? DType.U8 : DType;
        long bytes = checked(elements * dtype.ByteSize());
        // Bytes are the rule's values rounded down: any code 0–255, or the scale exponents 113 and 114.
        var rule = mxfp4
            ? new SyntheticValues(_seed ^ Fnv1a(name), scales ? 113 : 0, scales ? 115 : 256, Ones: false)
            : new SyntheticValues(_seed ^ Fnv1a(name), -Range, Range, name.EndsWith("norm.weight", StringComparison.Ordinal));
        if (!_materialize && !mxfp4)
        {
            return new WeightTensor(name, dtype, shape, 0, bytes) { Synthetic = rule };
        }

        byte* data = (byte*)NativeMemory.AlignedAlloc((nuint)Math.Max(bytes, 1), Alignment);
        Fill(data, elements, rule, dtype);
        return new WeightTensor(name, dtype, shape, (nint)data, bytes);
    }

    // Elements per parallel piece of a fill: each piece starts its generator at its own offset, so any split gives the
    // same values (element i is always SplitMix64 at state + (i + 1)·γ).
    private const int FillPiece = 1 << 20;

    private static void Fill(byte* data, long elements, SyntheticValues rule, DType dtype)
    {
        long pieces = (elements + FillPiece - 1) / FillPiece;
        Parallel.For(0L, pieces, piece =>
        {
            long start = piece * FillPiece;
            FillRange(data, start, Math.Min(FillPiece, elements - start), rule, dtype);
        });
    }

    private static void FillRange(byte* data, long start, long count, SyntheticValues rule, DType dtype)
    {
        bool ones = rule.Ones;
        var random = new SplitMix64(rule.From(start).State);
        Span<float> chunk = stackalloc float[1024];
        int size = dtype.ByteSize();
        for (long done = 0; done < count; done += chunk.Length)
        {
            var values = chunk[..(int)Math.Min(chunk.Length, count - done)];
            if (ones)
            {
                values.Fill(1f);
            }
            else
            {
                for (int i = 0; i < values.Length; i++)
                {
                    values[i] = random.NextUniform(rule.Low, rule.High);
                }
            }
            byte* destination = data + ((start + done) * size);
            switch (dtype)
            {
                case DType.U8:
                    for (int i = 0; i < values.Length; i++)
                    {
                        destination[i] = (byte)Math.Min(values[i], rule.High - 1);
                    }

                    break;
                case DType.F32:
                    values.CopyTo(new Span<float>(destination, values.Length));
                    break;
                case DType.BF16:
                    HalfConversions.FloatToBf16(values, new Span<ushort>(destination, values.Length));
                    break;
                case DType.F16:
                    HalfConversions.FloatToHalf(values, new Span<Half>(destination, values.Length));
                    break;
            }
        }
    }

    /// <summary>FNV-1a over the name's UTF-16 code units: stable across runs, unlike <c>string.GetHashCode</c>.</summary>
    private static ulong Fnv1a(string name)
    {
        ulong hash = 0xcbf29ce484222325;
        foreach (char c in name)
        {
            hash = (hash ^ c) * 0x100000001b3;
        }
        return hash;
    }

    /// <summary>Steele, Lea and Flood's SplitMix64: tiny, fast, and good enough for filler weights.</summary>
    private struct SplitMix64(ulong state)
    {
        private ulong _state = state;

        public float NextUniform(float low, float high)
        {
            _state += SyntheticValues.Gamma;
            ulong z = _state;
            z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9;
            z = (z ^ (z >> 27)) * 0x94D049BB133111EB;
            z ^= z >> 31;
            float unit = (z >> 40) * (1f / (1 << 24)); // 24 random bits: every float in [0, 1) step 2^-24
            return low + (high - low) * unit;
        }
    }
}
