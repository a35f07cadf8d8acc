using BenchmarkDotNet.Attributes;
using Celer.Backends.Cpu.Kernels;
using Celer.Models.Weights;

namespace Celer.Benchmarks;

/// <summary>
/// The linear layer at decode batch sizes (m = 1 to 32 rows, one per sequence) and prefill sizes (m = 64, 256).
/// The weights cycle through enough copies to exceed the last-level cache, as they do in a real model where
/// every layer's weights are different, so decode reads them from DRAM.
/// </summary>
public unsafe class MatMulBenchmarks : IHasWorkload
{
    /// <summary>Weight bytes cycled through per benchmark: larger than any current L3.</summary>
    private const long ColdWeightBytes = 256L << 20;

    private NativeBuffer[] _weights = [];
    private NativeBuffer? _x;
    private NativeBuffer? _y;
    private int _next;

    [Params(1, 4, 8, 16, 32, 64, 256)]
    public int M { get; set; }

    /// <summary>out_features × in_features (n × k), as HF stores the weight.</summary>
    [Params("2048x2048", "4096x1024")]
    public string Shape { get; set; } = "2048x2048";

    [Params(DType.BF16, DType.F32)]
    public DType WeightType { get; set; }

    private int N => int.Parse(Shape.Split('x')[0]);

    private int K => int.Parse(Shape.Split('x')[1]);

    public Workload Workload => new(
        2.0 * M * N * K,
        ((double)N * K * WeightType.ByteSize()) + (4.0 * M * K) + (4.0 * M * N));

    [GlobalSetup]
    public void Setup()
    {
        var random = new Random(1);
        long weightBytes = (long)N * K * WeightType.ByteSize();
        _weights = new NativeBuffer[(int)Math.Max(1, ColdWeightBytes / weightBytes)];
        for (int i = 0; i < _weights.Length; i++)
        {
            _weights[i] = new NativeBuffer(weightBytes);
            FillWeights(_weights[i], random);
        }

        _x = new NativeBuffer(4L * M * K, random);
        _y = new NativeBuffer(4L * M * N);
    }

    [Benchmark]
    public void MatMul()
    {
        NativeBuffer w = _weights[_next];
        _next = (_next + 1) % _weights.Length;
        Celer.Backends.Cpu.Kernels.MatMul.Run(_x!.Floats, M, K, w.Pointer, WeightType, N, _y!.Floats);
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        foreach (NativeBuffer w in _weights)
        {
            w.Dispose();
        }

        _x?.Dispose();
        _y?.Dispose();
    }

    private void FillWeights(NativeBuffer buffer, Random random)
    {
        long count = (long)N * K;
        for (long i = 0; i < count; i++)
        {
            float value = (random.NextSingle() - 0.5f) * 0.1f;
            if (WeightType == DType.BF16)
            {
                ((ushort*)buffer.Pointer)[i] = Conversions.F32ToBF16(value);
            }
            else
            {
                buffer.Floats[i] = value;
            }
        }
    }
}
