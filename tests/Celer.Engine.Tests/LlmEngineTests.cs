using Celer.Engine.Tests.Support;

namespace Celer.Engine.Tests;

public class LlmEngineTests
{
    private const string Document = "import os\n\ndef main():\n    path = os.getcwd()\n    print(path)\n    return 0\n";
    private static readonly int[] DocumentTokens = TinyPy.Tokenizer.Encode(Document, addSpecialTokens: false);

    internal static EngineArgs Args(int maxNumBatchedTokens = 32, int maxModelLen = 256, bool asyncScheduling = false) => new()
    {
        Model = "celer-tiny-py",
        BlockSize = 4,
        MaxModelLen = maxModelLen,
        MaxNumBatchedTokens = maxNumBatchedTokens,
        MaxNumSeqs = 8,
        AsyncScheduling = asyncScheduling,
    };

    internal static PagedTokenModelExecutor RecitingExecutor(int numBlocks = 129) =>
        new(numBlocks, 4, TinyPy.VocabSize, TinyPy.Reciting(DocumentTokens));

    internal static EngineModelInfo Model => new(TinyPy.VocabSize, 1024, TinyPy.EosTokenId);

    internal static GenerateRequest Prompt(string id, int promptTokens, SamplingParams p) => new(id, DocumentTokens[..promptTokens], p);

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void Generate_ReturnsTheContinuationText_InInputOrder_WithAllBlocksBack(bool asyncScheduling)
    {
#pragma warning disable CA2000 // the engine owns the executor and disposes it
        using var engine = new LlmEngine(Args(asyncScheduling: asyncScheduling), RecitingExecutor(), TinyPy.Tokenizer, Model);
#pragma warning restore CA2000
        int[] head = TinyPy.Tokenizer.Encode("import os\n\n", addSpecialTokens: false);
        IReadOnlyList<RequestOutput> outputs = engine.Generate([
            Prompt("b", head.Length, new SamplingParams { MaxTokens = 200, Stop = ["print"] }),
            Prompt("a", head.Length, new SamplingParams { MaxTokens = 3 }),
        ]);
        Assert.Equal(["b", "a"], outputs.Select(o => o.RequestId));
        CompletionOutput b = outputs[0].Outputs.Single();
        string rest = TinyPy.Tokenizer.Decode(DocumentTokens.AsSpan(head.Length));
        Assert.Equal(rest[..rest.IndexOf("print", StringComparison.Ordinal)], b.TextDelta);
        Assert.EndsWith("os.getcwd()\n    ", b.TextDelta, StringComparison.Ordinal);
        Assert.Equal((FinishReason.Stop, (object)"print"), (b.FinishReason!.Value, b.StopReason!));
        CompletionOutput a = outputs[1].Outputs.Single();
        Assert.Equal(DocumentTokens[head.Length..(head.Length + 3)], a.TokenIdsDelta);
        Assert.Equal(TinyPy.Tokenizer.Decode(DocumentTokens.AsSpan(head.Length, 3)), a.TextDelta);
        Assert.Equal(FinishReason.Length, a.FinishReason);
        Assert.True(outputs.All(o => o.Finished && o.Metrics is not null));
        Assert.Equal(128, engine.Scheduler.KvCacheManager.BlockPool.NumFreeBlocks);
        Assert.Equal(0, engine.Stats.NumRunning);
        Assert.Equal(1, engine.Stats.RequestSuccess[FinishReason.Stop]);
        Assert.Equal(1, engine.Stats.RequestSuccess[FinishReason.Length]);
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void NGreaterThanOne_FansOutChildren_SharingThePromptBlocks(bool asyncScheduling)
    {
#pragma warning disable CA2000 // the engine owns the executor and disposes it
        using var engine = new LlmEngine(Args(asyncScheduling: asyncScheduling), RecitingExecutor(), TinyPy.Tokenizer, Model);
#pragma warning restore CA2000
        RequestOutput output = engine.Generate([Prompt("r", 12, new SamplingParams { N = 3, MaxTokens = 5, Seed = 7 })]).Single();
        Assert.Equal([0, 1, 2], output.Outputs.Select(o => o.Index));
        Assert.All(output.Outputs, o => Assert.Equal(DocumentTokens[12..17], o.TokenIdsDelta));
        // Children 1 and 2 were admitted in the same step as child 0, whose blocks were cached at allocation.
        Assert.Equal(8, output.NumCachedTokens);
        Assert.Equal(128, engine.Scheduler.KvCacheManager.BlockPool.NumFreeBlocks);
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void EosFinishesWithoutText_AndMaxTokensNullMeansTheRestOfTheContext(bool asyncScheduling)
    {
        int[] withEos = [.. DocumentTokens[..10], TinyPy.EosTokenId];
#pragma warning disable CA2000 // the engine owns the executor and disposes it
        var executor = new PagedTokenModelExecutor(129, 4, TinyPy.VocabSize, TinyPy.Reciting(withEos));
#pragma warning restore CA2000
        using var engine = new LlmEngine(Args(maxModelLen: 40, asyncScheduling: asyncScheduling), executor, TinyPy.Tokenizer, Model);
        RequestOutput[] outputs = [.. engine.Generate([
            new GenerateRequest("eos", DocumentTokens[..6], new SamplingParams { MaxTokens = null }),
            new GenerateRequest("ignore", DocumentTokens[..6], new SamplingParams { MaxTokens = null, IgnoreEos = true }),
        ])];
        CompletionOutput eos = outputs[0].Outputs.Single();
        Assert.Equal((FinishReason.Stop, null), (eos.FinishReason!.Value, eos.StopReason));
        Assert.Equal(TinyPy.Tokenizer.Decode(DocumentTokens.AsSpan(6, 4)), eos.TextDelta);
        Assert.Equal([.. DocumentTokens[6..10], TinyPy.EosTokenId], eos.TokenIdsDelta);
        CompletionOutput ignore = outputs[1].Outputs.Single();
        Assert.Equal((FinishReason.Length, 40 - 6), (ignore.FinishReason!.Value, ignore.TokenIdsDelta.Count));
        // The prompt step and four decodes sample the five tokens; with async scheduling one more step was scheduled
        // before the EOS came back, and its token dropped. The length-capped request never gets such a step.
        Assert.Equal(asyncScheduling ? 6 : 5, executor.History.Count(h => h.NumScheduledTokens.ContainsKey("eos")));
        Assert.Equal(40 - 6, executor.History.Count(h => h.NumScheduledTokens.ContainsKey("ignore")));
    }

    [Fact]
    public void Admission_RejectsBadRequestsWithTheServerFacingCodes()
    {
#pragma warning disable CA2000 // the engine owns the executor and disposes it
        using var engine = new LlmEngine(Args(maxModelLen: 100), RecitingExecutor(), TinyPy.Tokenizer, Model);
#pragma warning restore CA2000
        var empty = Assert.Throws<EngineRequestException>(() => engine.Generate([new GenerateRequest("e", [], new SamplingParams())]));
        Assert.Equal("prompt", empty.Param);
        var oov = Assert.Throws<EngineRequestException>(() => engine.Generate([new GenerateRequest("o", [5, 8192], new SamplingParams())]));
        Assert.Contains("8192", oov.Message, StringComparison.Ordinal);
        var tooLong = Assert.Throws<EngineRequestException>(() => engine.Generate([new GenerateRequest("l", DocumentTokens[..10], new SamplingParams { MaxTokens = 95 })]));
        Assert.Equal("context_length_exceeded", tooLong.Code);
        Assert.Equal("This model's maximum context length is 100 tokens. However, you requested 105 tokens (10 in the messages, 95 in the completion). Please reduce the length of the messages or completion.", tooLong.Message);
        int[] hundred = [.. Enumerable.Repeat(DocumentTokens[0], 100)];
        var noRoom = Assert.Throws<EngineRequestException>(() => engine.Generate([new GenerateRequest("n", hundred, new SamplingParams { MaxTokens = null })]));
        Assert.Equal("context_length_exceeded", noRoom.Code);
        Assert.Throws<SamplingParamsException>(() => engine.Generate([new GenerateRequest("n", [5], new SamplingParams { N = 129 })]));
        // Nothing was admitted by the failed calls.
        Assert.Equal(0, engine.Stats.NumWaiting);
    }

    [Fact]
    public void EngineArgs_RejectsAPoolTooSmallForOneFullSequence()
    {
        var args = Args(maxModelLen: 1024);
        var e = Assert.Throws<ArgumentException>(() => new LlmEngine(args, RecitingExecutor(numBlocks: 100), TinyPy.Tokenizer, Model));
        Assert.Contains("--max-model-len 1024", e.Message, StringComparison.Ordinal);
        Assert.Throws<ArgumentException>(() => new EngineArgs { Model = "m", BlockSize = 12 }.Validate());
        Assert.Throws<ArgumentException>(() => new EngineArgs { Model = "m", SchedulingPolicy = "lifo" }.Validate());
    }
}
