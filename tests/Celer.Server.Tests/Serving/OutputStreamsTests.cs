using System.Runtime.CompilerServices;
using Celer.Engine;
using Celer.Server.Serving;

namespace Celer.Server.Tests.Serving;

public class OutputStreamsTests
{
    private static RequestOutput Output(string id, int step, bool finished) =>
        new(id, [1, 2], null, [new CompletionOutput(0, $"{id}:{step}", [step], null, finished ? FinishReason.Length : null, null)], finished, 0);

    private static async IAsyncEnumerable<RequestOutput> Steps(string id, int count, TimeSpan delay, [EnumeratorCancellation] CancellationToken ct = default)
    {
        for (var i = 0; i < count; i++)
        {
            await Task.Delay(delay, ct);
            yield return Output(id, i, i == count - 1);
        }
    }

    [Fact]
    public async Task Every_output_of_every_stream_arrives_tagged_and_in_order_per_stream()
    {
        var counts = new[] { 5, 1, 3 };
        var streams = counts.Select((n, i) => Steps($"r{i}", n, TimeSpan.FromMilliseconds(1 + i))).ToList();

        var seen = new List<(int, RequestOutput)>();
        await foreach (var item in OutputStreams.MergeAsync(streams, CancellationToken.None))
            seen.Add(item);

        Assert.Equal(counts.Sum(), seen.Count);
        for (var i = 0; i < counts.Length; i++)
        {
            var texts = seen.Where(s => s.Item1 == i).Select(s => s.Item2.Outputs[0].TextDelta).ToList();
            Assert.Equal(Enumerable.Range(0, counts[i]).Select(step => $"r{i}:{step}"), texts);
        }
    }

    [Fact]
    public async Task A_failing_stream_ends_the_merge_with_its_exception_and_cancels_the_others()
    {
        var slowCancelled = new TaskCompletionSource();
        async IAsyncEnumerable<RequestOutput> Failing([EnumeratorCancellation] CancellationToken ct = default)
        {
            yield return Output("bad", 0, false);
            await Task.Yield();
            throw new EngineDeadException("engine loop threw");
        }
        async IAsyncEnumerable<RequestOutput> Slow([EnumeratorCancellation] CancellationToken ct = default)
        {
            using var _ = ct.Register(() => slowCancelled.TrySetResult());
            await Task.Delay(Timeout.Infinite, ct);
            yield break;
        }

        IAsyncEnumerable<RequestOutput>[] streams = [Failing(TestContext.Current.CancellationToken), Slow(TestContext.Current.CancellationToken)];
        await Assert.ThrowsAsync<EngineDeadException>(async () =>
        {
            await foreach (var _ in OutputStreams.MergeAsync(streams, CancellationToken.None))
            {
            }
        });
        await slowCancelled.Task.WaitAsync(TimeSpan.FromSeconds(5), TestContext.Current.CancellationToken);
    }

    [Fact]
    public async Task Leaving_the_loop_early_cancels_the_engine_streams()
    {
        var cancelled = new TaskCompletionSource();
        async IAsyncEnumerable<RequestOutput> Endless([EnumeratorCancellation] CancellationToken ct = default)
        {
            using var _ = ct.Register(() => cancelled.TrySetResult());
            for (var i = 0; ; i++)
            {
                await Task.Delay(1, ct);
                yield return Output("r", i, false);
            }
        }

        await foreach (var _ in OutputStreams.MergeAsync([Endless(TestContext.Current.CancellationToken)], CancellationToken.None))
            break;
        await cancelled.Task.WaitAsync(TimeSpan.FromSeconds(5), TestContext.Current.CancellationToken);
    }
}
