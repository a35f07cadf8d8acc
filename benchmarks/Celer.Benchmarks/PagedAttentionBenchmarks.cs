using BenchmarkDotNet.Attributes;
using Celer.Backends.Cpu.Kernels;

namespace Celer.Benchmarks;

/// <summary>
/// Paged attention with Llama-3-8B's attention shape (32 query heads, 8 kv heads, head dim 128, block 16):
/// a decode step of 4 sequences with 1K or 4K tokens of context (the KV cache, 4 × 32 or 128 MiB, streams from
/// DRAM), a decode step of one sequence with 16K tokens (fewer kv heads than a many-core machine has cores, so the
/// context itself must be split), and the prefill of one 512-token prompt.
/// </summary>
public unsafe class PagedAttentionBenchmarks : IHasWorkload
{
    private const int NumHeads = 32;
    private const int NumKvHeads = 8;
    private const int HeadDim = 128;
    private const int BlockSize = 16;

    private NativeBuffer? _q;
    private NativeBuffer? _output;
    private NativeBuffer? _kCache;
    private NativeBuffer? _vCache;
    private int[] _blockTables = [];
    private int[] _queryStartLoc = [];
    private int[] _seqLens = [];

    [Params("decode-1k", "decode-4k", "decode-1x16k", "prefill-512")]
    public string Scenario { get; set; } = "decode-1k";

    private int NumSeqs => Scenario is "decode-1k" or "decode-4k" ? 4 : 1;

    private int SeqLen => Scenario switch
    {
        "decode-1k" => 1024,
        "decode-4k" => 4096,
        "decode-1x16k" => 16384,
        _ => 512,
    };

    private int QueryLen => Scenario.StartsWith("decode", StringComparison.Ordinal) ? 1 : SeqLen;

    public Workload Workload
    {
        get
        {
            // Each (query row, head) scores and sums over its visible positions: 2 flops per dimension for q·k and
            // 2 for p·v. Memory: K and V of every visible position once per kv head, plus q and the output.
            double visiblePairs = NumSeqs * (QueryLen == 1 ? SeqLen : QueryLen * (QueryLen + 1) / 2.0);
            double flops = visiblePairs * NumHeads * HeadDim * 4;
            double bytes = (NumSeqs * (double)SeqLen * NumKvHeads * HeadDim * 4 * 2) + (2.0 * NumSeqs * QueryLen * NumHeads * HeadDim * 4);
            return new Workload(flops, bytes);
        }
    }

    [GlobalSetup]
    public void Setup()
    {
        var random = new Random(2);
        int blocksPerSeq = (SeqLen + BlockSize - 1) / BlockSize;
        int numBlocks = NumSeqs * blocksPerSeq;
        long cacheBytes = (long)numBlocks * BlockSize * NumKvHeads * HeadDim * sizeof(float);
        _kCache = new NativeBuffer(cacheBytes, random);
        _vCache = new NativeBuffer(cacheBytes, random);
        _q = new NativeBuffer((long)NumSeqs * QueryLen * NumHeads * HeadDim * sizeof(float), random);
        _output = new NativeBuffer(_q.Bytes);

        // Blocks in shuffled order, as the block pool hands them out after some churn.
        _blockTables = Enumerable.Range(0, numBlocks).OrderBy(_ => random.Next()).ToArray();
        _queryStartLoc = Enumerable.Range(0, NumSeqs + 1).Select(s => s * QueryLen).ToArray();
        _seqLens = Enumerable.Repeat(SeqLen, NumSeqs).ToArray();
    }

    [Benchmark]
    public void PagedAttention()
    {
        fixed (int* blockTables = _blockTables, queryStartLoc = _queryStartLoc, seqLens = _seqLens)
        {
            Celer.Backends.Cpu.Kernels.PagedAttention.Run(
                _q!.Floats, NumSeqs * QueryLen, NumHeads, NumKvHeads, HeadDim,
                _kCache!.Floats, _vCache!.Floats, BlockSize, blockTables, _blockTables.Length / NumSeqs,
                queryStartLoc, seqLens, NumSeqs, 1 / MathF.Sqrt(HeadDim), 0, _output!.Floats);
        }
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        _q?.Dispose();
        _output?.Dispose();
        _kCache?.Dispose();
        _vCache?.Dispose();
    }
}
