using Celer.Engine.Execution;
using Celer.TestSupport;

namespace Celer.Engine.Tests.Execution;

/// <summary>
/// The loading progress the CLI draws ends at 100 %, from a checkpoint and from dummy weights alike; the startup log
/// names each phase with its time and the KV cache's size.
/// </summary>
public sealed class ModelLoadProgressTests
{
    private sealed class Recorder : IProgress<ModelLoadProgress>
    {
        public List<ModelLoadProgress> Reports { get; } = [];

        public void Report(ModelLoadProgress value) => Reports.Add(value);
    }

    [Theory]
    [InlineData("auto")]
    [InlineData("dummy")]
    public void The_last_report_is_complete(string loadFormat)
    {
        var recorder = new Recorder();
        using (ModelLoader.LoadOffline(new EngineArgs { Model = RepoPaths.DefaultModel, LoadFormat = loadFormat }, recorder).Engine)
        {
        }

        Assert.True(recorder.Reports.Count > 1);
        ModelLoadProgress last = recorder.Reports[^1];
        Assert.True(last.TensorsLoaded > 0);
        Assert.Equal(last.TensorsLoaded, last.TotalTensors);
        Assert.Equal(last.BytesLoaded, last.TotalBytes);
        Assert.Equal(recorder.Reports[^2].TensorsLoaded, last.TensorsLoaded);
    }

    /// <summary>
    /// A quantized checkpoint's progress is counted in what it stores, the totals' own units: every tensor of an
    /// act-order GPTQ checkpoint (codes, zero points, scales and group indexes, read by the quantization wrapper, all of
    /// them needed) once, with its bytes.
    /// </summary>
    [Fact]
    public void A_quantized_checkpoint_counts_its_stored_tensors()
    {
        string dir = Path.Combine(RepoPaths.FixtureModels, "llama-gptq-int4-g16-actorder");
        var recorder = new Recorder();
        var args = new EngineArgs { Model = dir, MaxModelLen = 128, KvCacheMemoryBytes = 16L << 20 };
        using (ModelLoader.LoadOffline(args, recorder).Engine)
        {
        }

        using var checkpoint = Celer.Models.Weights.SafetensorsWeightSource.Open(dir);
        ModelLoadProgress last = recorder.Reports[^1];
        Assert.Equal(checkpoint.Names.Count(), last.TensorsLoaded);
        Assert.Equal(checkpoint.Names.Sum(n => checkpoint.Get(n).ByteLength), last.BytesLoaded);
        Assert.Equal(checkpoint.Names.Count(), recorder.Reports[^2].TotalTensors);
    }

    [Fact]
    public void The_startup_log_times_each_phase_and_sizes_the_kv_cache()
    {
        var lines = new List<string>();
        var args = new EngineArgs { Model = RepoPaths.DefaultModel, MaxModelLen = 512, KvCacheMemoryBytes = 64L << 20 };
        using (ModelLoader.LoadOffline(args, log: lines.Add).Engine)
        {
        }

        Assert.Collection(
            lines,
            l => Assert.Matches(@"^read the model config \(\w+ForCausalLM\) and tokenizer \(\d+\.\d\d s\)$", l),
            l => Assert.Matches(@"^backend cpu.* ready, computing in F32 \(\d+\.\d\d s\)$", l),
            l => Assert.Matches(@"^weights loaded: \d+\.\d\d GiB, served in \w+ \(auto\) \(\d+\.\d\d s\)$", l),
            l => Assert.StartsWith("KV cache: ", l),
            l => Assert.Matches(@"^warmed up the kernels' JIT: \d+ padding steps \(\d+\.\d\d s\)$", l),
            l => Assert.Matches(@"^warmed up the engine's path: [1-9]\d* requests \(\d+\.\d\d s\)$", l),
            l => Assert.Matches(@"^engine ready in \d+\.\d\d s$", l));
        // The numbers agree with each other: blocks x 16 tokens, 64 MiB in all, tokens / 512 concurrent requests.
        var kv = System.Text.RegularExpressions.Regex.Match(lines[3],
            @"^KV cache: (\d+) blocks of 16 tokens = (\d+) tokens, (\d+\.\d\d) GiB \(F32\); maximum concurrency for 512 tokens per request: (\d+\.\d\d)x \(\d+\.\d\d s\)$");
        Assert.True(kv.Success, lines[3]);
        long blocks = long.Parse(kv.Groups[1].Value), tokens = long.Parse(kv.Groups[2].Value);
        Assert.True(blocks > 1);
        Assert.Equal(blocks * 16, tokens);
        Assert.Equal("0.06", kv.Groups[3].Value);   // 64 MiB
        Assert.Equal((tokens / 512.0).ToString("F2"), kv.Groups[4].Value);
    }
}
