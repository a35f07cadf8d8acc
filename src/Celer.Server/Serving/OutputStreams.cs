using System.Runtime.CompilerServices;
using System.Threading.Channels;
using Celer.Engine;

namespace Celer.Server.Serving;

/// <summary>
/// Interleaves the output streams of a batch of engine requests (one per prompt) in arrival order,
/// tagged with the prompt's index, like vLLM's <c>merge_async_iterators</c>. The first failure
/// ends the merged stream with that exception; leaving the loop early (client gone, error) cancels
/// every stream, which aborts the engine requests and frees their KV blocks. Every stream is
/// enumerated even when the token is already cancelled, since only an enumerated engine stream
/// aborts its request when abandoned.
/// </summary>
internal static class OutputStreams
{
    public static async IAsyncEnumerable<(int PromptIndex, RequestOutput Output)> MergeAsync(
        IReadOnlyList<IAsyncEnumerable<RequestOutput>> streams,
        [EnumeratorCancellation] CancellationToken cancellationToken)
    {
        using var stop = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        // Unbounded: each stream already yields at most one output per engine step.
        var channel = Channel.CreateUnbounded<(int, RequestOutput)>(new UnboundedChannelOptions { SingleReader = true });
        var remaining = streams.Count;
        var pumps = new Task[streams.Count];
        for (var i = 0; i < streams.Count; i++)
        {
            var index = i;
            pumps[i] = Task.Run(async () =>
            {
                try
                {
                    await foreach (var output in streams[index].WithCancellation(stop.Token))
                        await channel.Writer.WriteAsync((index, output), stop.Token);
                    if (Interlocked.Decrement(ref remaining) == 0)
                        channel.Writer.TryComplete();
                }
                catch (Exception e)
                {
                    channel.Writer.TryComplete(e);
                }
            }, CancellationToken.None);
        }

        try
        {
            await foreach (var item in channel.Reader.ReadAllAsync(cancellationToken))
                yield return item;
        }
        finally
        {
            // Cancel, not CancelAsync: the streams' callbacks (which abort the engine requests and free their KV blocks)
            // run here, inline, instead of waiting for a thread-pool thread, which a busy pool may not give for seconds.
#pragma warning disable CA1849
            stop.Cancel();
#pragma warning restore CA1849
            await Task.WhenAll(pumps);
        }
    }
}
