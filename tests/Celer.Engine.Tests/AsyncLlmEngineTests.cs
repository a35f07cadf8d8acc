using Celer.Engine.Tests.Support;

namespace Celer.Engine.Tests;

public class AsyncLlmEngineTests
{
    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(10);

    private static async Task<List<RequestOutput>> Collect(IAsyncEnumerable<RequestOutput> stream)
    {
        var outputs = new List<RequestOutput>();
        await foreach (RequestOutput o in stream)
        {
            outputs.Add(o);
        }
        return outputs;
    }

    private static async Task WaitUntil(Func<bool> condition)
    {
        var deadline = DateTime.UtcNow + Patience;
        while (!condition())
        {
            Assert.True(DateTime.UtcNow < deadline, "timed out");
            await Task.Delay(5);
        }
    }

    [Fact]
    public async Task Streams_DeltasThatAddUpToTheOfflineResult()
    {
        var p = new SamplingParams { MaxTokens = 30, Stop = ["print"], N = 2, Seed = 3 };
#pragma warning disable CA2000 // the engine owns the executor and disposes it
        using var offline = new LlmEngine(LlmEngineTests.Args(), LlmEngineTests.RecitingExecutor(), TinyPy.Tokenizer, LlmEngineTests.Model);
#pragma warning restore CA2000
        RequestOutput expected = offline.Generate([LlmEngineTests.Prompt("r", 5, p)]).Single();

#pragma warning disable CA2000 // the engine owns the executor and disposes it
        await using var engine = new AsyncLlmEngine(LlmEngineTests.Args(), LlmEngineTests.RecitingExecutor(), TinyPy.Tokenizer, LlmEngineTests.Model);
#pragma warning restore CA2000
        List<RequestOutput> deltas = await Collect(engine.GenerateAsync(LlmEngineTests.Prompt("r", 5, p), TestContext.Current.CancellationToken));
        Assert.True(deltas.Count > 2);
        Assert.True(deltas[^1].Finished);
        Assert.All(deltas[..^1], d => Assert.False(d.Finished));
        var accumulator = new RequestOutputAccumulator(2);
        deltas.ForEach(accumulator.Add);
        RequestOutput streamed = accumulator.Build();
        Assert.Equal(expected.Outputs.Select(o => (o.TextDelta, o.FinishReason, o.StopReason)), streamed.Outputs.Select(o => (o.TextDelta, o.FinishReason, o.StopReason)));
        Assert.Equal(expected.Outputs.Select(o => o.TokenIdsDelta), streamed.Outputs.Select(o => o.TokenIdsDelta));
        Assert.DoesNotContain(deltas.SelectMany(d => d.Outputs), c => c.TextDelta.Contains("pri", StringComparison.Ordinal));
    }

    /// <summary>
    /// A consumer that stops reading (a client stalled on a full socket) holds back neither the loop nor other
    /// requests: its outputs wait in its own stream, and it gets them all when it reads again.
    /// </summary>
    [Fact]
    public async Task A_stream_nobody_reads_does_not_hold_back_the_loop_or_other_requests()
    {
        var p = new SamplingParams { MaxTokens = 40, IgnoreEos = true };
#pragma warning disable CA2000 // the engine owns the executor and disposes it
        await using var engine = new AsyncLlmEngine(LlmEngineTests.Args(), LlmEngineTests.RecitingExecutor(), TinyPy.Tokenizer, LlmEngineTests.Model);
#pragma warning restore CA2000
        IAsyncEnumerable<RequestOutput> stalled = engine.GenerateAsync(LlmEngineTests.Prompt("stalled", 5, p), TestContext.Current.CancellationToken);
        await using IAsyncEnumerator<RequestOutput> reader = stalled.GetAsyncEnumerator(TestContext.Current.CancellationToken);
        Assert.True(await reader.MoveNextAsync());   // started, then left unread

        for (int i = 0; i < 3; i++)
        {
            List<RequestOutput> other = await Collect(engine.GenerateAsync(LlmEngineTests.Prompt($"other{i}", 7, p), TestContext.Current.CancellationToken)).WaitAsync(Patience, TestContext.Current.CancellationToken);
            Assert.True(other[^1].Finished);
        }

        var accumulator = new RequestOutputAccumulator(1);
        accumulator.Add(reader.Current);
        while (await reader.MoveNextAsync().AsTask().WaitAsync(Patience, TestContext.Current.CancellationToken))
        {
            accumulator.Add(reader.Current);
        }

        RequestOutput whole = accumulator.Build();
        Assert.Equal(40, whole.Outputs[0].TokenIdsDelta.Count);
        Assert.Equal(FinishReason.Length, whole.Outputs[0].FinishReason);
    }

    [Fact]
    public async Task Cancellation_AbortsTheRequestAndFreesItsBlocks()
    {
#pragma warning disable CA2000 // the engine owns the executor and disposes it
        PagedTokenModelExecutor executor = LlmEngineTests.RecitingExecutor();
#pragma warning restore CA2000
        using var cts = new CancellationTokenSource();
        // From the third token on, the model waits for the client to go away, so the request can't finish first;
        // once it has gone, each step takes 5 ms, so the ~200 steps left outlast the abort's trip to the loop
        // (on a loaded machine the consumer's thread can lag the loop by tens of milliseconds).
        executor.AfterSample = step =>
        {
            cts.Token.WaitHandle.WaitOne(step > 3 ? Patience : TimeSpan.Zero);
            if (cts.IsCancellationRequested)
            {
                Thread.Sleep(5);
            }
        };
        await using var engine = new AsyncLlmEngine(LlmEngineTests.Args(), executor, TinyPy.Tokenizer, LlmEngineTests.Model);
        int received = 0;
        await Assert.ThrowsAnyAsync<OperationCanceledException>(async () =>
        {
            await foreach (RequestOutput o in engine.GenerateAsync(LlmEngineTests.Prompt("r", 5, new SamplingParams { MaxTokens = 200, IgnoreEos = true }), cts.Token))
            {
                if (++received == 3)
                {
                    await cts.CancelAsync();
                }
            }
        });
        await WaitUntil(() => engine.Stats is { NumRunning: 0, NumWaiting: 0, KvCacheUsage: 0f });
        Assert.Equal(1, engine.Stats.RequestSuccess[FinishReason.Abort]);
    }

    [Fact]
    public async Task AbortAsync_EndsTheStreamWithFinishReasonAbort()
    {
#pragma warning disable CA2000 // the engine owns the executor and disposes it
        PagedTokenModelExecutor executor = LlmEngineTests.RecitingExecutor();
#pragma warning restore CA2000
        using var abortSent = new ManualResetEventSlim();
        executor.AfterSample = _ => abortSent.Wait(Patience);
        await using var engine = new AsyncLlmEngine(LlmEngineTests.Args(), executor, TinyPy.Tokenizer, LlmEngineTests.Model);
        IAsyncEnumerable<RequestOutput> stream = engine.GenerateAsync(LlmEngineTests.Prompt("r", 5, new SamplingParams { MaxTokens = 200, IgnoreEos = true }), TestContext.Current.CancellationToken);
        Task abort = engine.AbortAsync("r");
        abortSent.Set();
        await abort;
        List<RequestOutput> outputs = await Collect(stream);
        Assert.Equal(FinishReason.Abort, outputs[^1].Outputs.Single().FinishReason);
        Assert.True(outputs[^1].Finished);
        Assert.Equal(0f, engine.Stats.KvCacheUsage);
        await engine.AbortAsync("r"); // a second abort of a finished request is a no-op
    }

    [Fact]
    public async Task AStepThatThrows_FailsEveryInFlightRequest_AndMarksTheEngineDead()
    {
#pragma warning disable CA2000 // the engine owns the executor and disposes it
        PagedTokenModelExecutor executor = LlmEngineTests.RecitingExecutor();
#pragma warning restore CA2000
        using var bothAdmitted = new ManualResetEventSlim();
        executor.AfterSample = step =>
        {
            bothAdmitted.Wait(Patience);
            if (step == 4)
            {
                throw new InvalidOperationException("backend crashed");
            }
        };
        await using var engine = new AsyncLlmEngine(LlmEngineTests.Args(), executor, TinyPy.Tokenizer, LlmEngineTests.Model);
        var p = new SamplingParams { MaxTokens = 100, IgnoreEos = true };
        Task<List<RequestOutput>> a = Collect(engine.GenerateAsync(LlmEngineTests.Prompt("a", 5, p), TestContext.Current.CancellationToken));
        Task<List<RequestOutput>> b = Collect(engine.GenerateAsync(LlmEngineTests.Prompt("b", 7, p), TestContext.Current.CancellationToken));
        bothAdmitted.Set();
        EngineDeadException dead = await Assert.ThrowsAsync<EngineDeadException>(() => a);
        Assert.IsType<InvalidOperationException>(dead.InnerException);
        await Assert.ThrowsAsync<EngineDeadException>(() => b);
        Assert.True(engine.IsDead);
        Assert.Throws<EngineDeadException>(() => engine.GenerateAsync(LlmEngineTests.Prompt("c", 5, p), TestContext.Current.CancellationToken));
    }

    [Fact]
    public async Task AdmissionErrors_AreThrownByTheCall_AndDuplicateIdsRejected()
    {
#pragma warning disable CA2000 // the engine owns the executor and disposes it
        PagedTokenModelExecutor executor = LlmEngineTests.RecitingExecutor();
#pragma warning restore CA2000
        using var disposing = new ManualResetEventSlim();
        executor.AfterSample = _ => disposing.Wait(Patience);
        var engine = new AsyncLlmEngine(LlmEngineTests.Args(), executor, TinyPy.Tokenizer, LlmEngineTests.Model);
        Assert.Throws<EngineRequestException>(() => engine.GenerateAsync(new GenerateRequest("x", [], new SamplingParams()), TestContext.Current.CancellationToken));
        var p = new SamplingParams { MaxTokens = 200, IgnoreEos = true };
        IAsyncEnumerable<RequestOutput> first = engine.GenerateAsync(LlmEngineTests.Prompt("dup", 5, p), TestContext.Current.CancellationToken);
        Assert.Equal("request_id", Assert.Throws<EngineRequestException>(() => engine.GenerateAsync(LlmEngineTests.Prompt("dup", 5, p), TestContext.Current.CancellationToken)).Param);

        // Disposing stops the loop: the in-flight request ends with abort and the executor is released.
        ValueTask disposed = engine.DisposeAsync();
        disposing.Set();
        await disposed;
        List<RequestOutput> outputs = await Collect(first);
        Assert.Equal(FinishReason.Abort, outputs[^1].Outputs.Single().FinishReason);
        Assert.True(executor.Disposed);
        Assert.Throws<ObjectDisposedException>(() => engine.GenerateAsync(LlmEngineTests.Prompt("late", 5, p), TestContext.Current.CancellationToken));
    }
}
