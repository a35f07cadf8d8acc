using System.Diagnostics;
using Celer.Engine.Distributed;
using static Celer.Engine.Tests.Distributed.BroadcastTestSupport;

namespace Celer.Engine.Tests.Distributed;

/// <summary>The broadcast queue between real processes, as the executor will use it: reader processes get every byte,
/// and killing the process on either side ends the other's wait with an error naming it.</summary>
[Collection(BroadcastTestSupport.Collection)]
public class ShmBroadcastProcessTests
{
    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(60);

    [Fact]
    public async Task ReaderProcesses_GetEveryMessage()
    {
        const int Messages = 2000;
        int[] lengths = BroadcastMessages.Lengths(seed: 2, Messages, max: 1000);
        byte[][] messages = [.. lengths.Select(BroadcastMessages.Make)];
        Process[] children = new Process[2];
        using var writer = ShmBroadcastWriter.Create(readerCount: 2, chunkBytes: 256, chunkCount: 8, reader => !children[reader].HasExited);
        try
        {
            children[0] = BroadcastPeerProcess.StartReader(writer.Name, 0, Messages);
            children[1] = BroadcastPeerProcess.StartReader(writer.Name, 1, Messages);
            foreach (byte[] message in messages)
            {
                writer.Enqueue(message, Patience, Ct);
            }

            string expected = BroadcastMessages.Checksum(messages);
            foreach (Process child in children)
            {
                Assert.Equal("open", await BroadcastPeerProcess.ReadLineAsync(child));
                Assert.Equal(expected, await BroadcastPeerProcess.ReadLineAsync(child));
                await child.WaitForExitAsync(Ct);
                Assert.Equal(0, child.ExitCode);
            }
        }
        finally
        {
            Array.ForEach(children, Stop);
        }
    }

    [Fact]
    public async Task KillingAReaderProcessMidStream_EndsTheWritersWait()
    {
        Process? child = null;
        using var writer = ShmBroadcastWriter.Create(readerCount: 1, chunkBytes: 64, chunkCount: 4, _ => !child!.HasExited);
        try
        {
            child = BroadcastPeerProcess.StartReader(writer.Name, 0, messages: 100, stallAfter: 5);
            Task sending = OnOwnThread(() =>
            {
                for (int i = 0; i < 100; i++)
                {
                    writer.Enqueue(BroadcastMessages.Make(i, 100), Timeout.InfiniteTimeSpan, Ct);
                }
            });
            Assert.Equal("open", await BroadcastPeerProcess.ReadLineAsync(child));
            Assert.Equal("stalled", await BroadcastPeerProcess.ReadLineAsync(child));
            // The reader holds still after 5 messages (10 chunks); the writer fills the 4-chunk ring behind it and waits.
            await Task.Delay(100, Ct);
            Assert.False(sending.IsCompleted);

            child.Kill();
            var died = await Assert.ThrowsAsync<BroadcastPeerDiedException>(() => sending.WaitAsync(Patience, Ct));
            Assert.Equal(0, died.Reader);
            Assert.Contains("reader 0 died without reading message chunk 11", died.Message, StringComparison.Ordinal);
        }
        finally
        {
            Stop(child);
        }
    }

    [Fact]
    public async Task KillingTheWriterProcessMidStream_EndsTheReadersWait()
    {
        const int Messages = 20;
        int[] lengths = BroadcastMessages.Lengths(seed: 3, Messages, max: 300);
        Process child = BroadcastPeerProcess.StartWriter(Messages, seed: 3);
        string name = "";
        try
        {
            name = await BroadcastPeerProcess.ReadLineAsync(child);
            using var reader = ShmBroadcastReader.Open(name, 0, () => !child.HasExited);
            for (int i = 0; i < Messages; i++)
            {
                Assert.Equal(BroadcastMessages.Make(i, lengths[i]), reader.Dequeue(Patience, Ct));
            }

            Assert.Equal("sent", await BroadcastPeerProcess.ReadLineAsync(child));
            Task<byte[]> waiting = OnOwnThread(() => reader.Dequeue(Timeout.InfiniteTimeSpan, Ct));
            await Task.Delay(100, Ct);
            Assert.False(waiting.IsCompleted);

            child.Kill();
            var died = await Assert.ThrowsAsync<BroadcastPeerDiedException>(() => waiting.WaitAsync(Patience, Ct));
            Assert.Null(died.Reader);
        }
        finally
        {
            Stop(child);
            // A killed writer cannot delete its file; this one is fresh, so no later writer would sweep it yet.
            if (name.StartsWith(ShmRingBuffer.NamePrefix, StringComparison.Ordinal))
            {
                File.Delete(Path.Combine(ShmRingBuffer.Folder, name));
            }
        }
    }

    private static void Stop(Process? process)
    {
        if (process is null)
        {
            return;
        }

        if (!process.HasExited)
        {
            process.Kill();
            process.WaitForExit();
        }

        process.Dispose();
    }
}
