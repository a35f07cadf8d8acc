using System.Diagnostics;
using Celer.Engine.Distributed;
using static Celer.Engine.Tests.Distributed.BroadcastTestSupport;

namespace Celer.Engine.Tests.Distributed;

/// <summary>
/// The broadcast queue never waits forever: a slow reader holds the writer back until a timeout names it, a dead
/// reader or writer (as its liveness delegate reports) ends the other side's wait, closing and cancelling end it too,
/// and a wait that fails before a message starts can be retried while one that fails part-way breaks the queue.
/// </summary>
[Collection(BroadcastTestSupport.Collection)]
public class ShmBroadcastLivenessTests
{
    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(30);
    private static readonly TimeSpan Short = TimeSpan.FromMilliseconds(50);

    [Fact]
    public void ASlowReader_HoldsTheWriterBack_AndTheTimeoutNamesIt_ThenTheSameMessageGoesThrough()
    {
        using var writer = ShmBroadcastWriter.Create(readerCount: 3, chunkBytes: 16, chunkCount: 2);
        ShmBroadcastReader[] readers = [.. Enumerable.Range(0, 3).Select(index => ShmBroadcastReader.Open(writer.Name, index))];
        try
        {
            writer.Enqueue(BroadcastMessages.Make(0, 10), Patience, Ct);
            writer.Enqueue(BroadcastMessages.Make(1, 10), Patience, Ct);
            readers[0].Dequeue(Patience, Ct);
            readers[0].Dequeue(Patience, Ct);
            readers[2].Dequeue(Patience, Ct);

            // Both chunks are taken; the first is still unread by reader 1, the second by readers 1 and 2.
            var clock = Stopwatch.StartNew();
            var timeout = Assert.Throws<BroadcastTimeoutException>(() => writer.Enqueue(BroadcastMessages.Make(2, 10), Short, Ct));
            Assert.InRange(clock.Elapsed, Short, Patience);
            Assert.Equal([1], timeout.StuckReaders);
            Assert.Contains("reader(s) 1 did not read message chunk 1", timeout.Message, StringComparison.Ordinal);

            readers[1].Dequeue(Patience, Ct);
            writer.Enqueue(BroadcastMessages.Make(2, 10), TimeSpan.Zero, Ct);
            // Chunk 2 is still unread by readers 1 and 2; a zero timeout fails without waiting.
            Assert.Equal([1, 2], Assert.Throws<BroadcastTimeoutException>(() => writer.Enqueue(BroadcastMessages.Make(3, 10), TimeSpan.Zero, Ct)).StuckReaders);

            Assert.Equal(BroadcastMessages.Make(1, 10), readers[1].Dequeue(Patience, Ct));
            Assert.Equal(BroadcastMessages.Make(1, 10), readers[2].Dequeue(Patience, Ct));
            foreach (ShmBroadcastReader reader in readers)
            {
                Assert.Equal(BroadcastMessages.Make(2, 10), reader.Dequeue(Patience, Ct));
            }
        }
        finally
        {
            Array.ForEach(readers, reader => reader.Dispose());
        }
    }

    [Fact]
    public async Task AReaderThatDies_EndsTheWritersWait_NamingIt()
    {
        bool readerOneAlive = true;
        using var writer = ShmBroadcastWriter.Create(readerCount: 2, chunkBytes: 16, chunkCount: 2, reader => reader != 1 || Volatile.Read(ref readerOneAlive));
        using var reader0 = ShmBroadcastReader.Open(writer.Name, 0);
        using var reader1 = ShmBroadcastReader.Open(writer.Name, 1);
        writer.Enqueue(BroadcastMessages.Make(0, 4), Patience, Ct);
        writer.Enqueue(BroadcastMessages.Make(1, 4), Patience, Ct);
        reader0.Dequeue(Patience, Ct);
        reader0.Dequeue(Patience, Ct);
        reader1.Dequeue(Patience, Ct);

        // Reader 1 read chunk 1, so its slot takes message 2; message 3 needs chunk 2, which reader 1 never reads.
        writer.Enqueue(BroadcastMessages.Make(2, 4), Patience, Ct);
        Task blocked = OnOwnThread(() => writer.Enqueue(BroadcastMessages.Make(3, 4), Timeout.InfiniteTimeSpan, Ct));
        await Task.Delay(Short, Ct);
        Assert.False(blocked.IsCompleted, "the writer went on without reader 1");

        var clock = Stopwatch.StartNew();
        Volatile.Write(ref readerOneAlive, false);
        var died = await Assert.ThrowsAsync<BroadcastPeerDiedException>(() => blocked.WaitAsync(Patience, Ct));
        Assert.InRange(clock.Elapsed, TimeSpan.Zero, TimeSpan.FromSeconds(5));
        Assert.Equal(1, died.Reader);
        Assert.Contains("reader 1 died without reading message chunk 2", died.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task AWriterThatDies_EndsTheReadersWait_AfterWhatItSentIsRead()
    {
        bool writerAlive = true;
        using var writer = ShmBroadcastWriter.Create(readerCount: 1, chunkBytes: 16, chunkCount: 4);
        using var reader = ShmBroadcastReader.Open(writer.Name, 0, () => Volatile.Read(ref writerAlive));
        writer.Enqueue(BroadcastMessages.Make(0, 40), Patience, Ct);
        Assert.Equal(BroadcastMessages.Make(0, 40), reader.Dequeue(Patience, Ct));

        Task<byte[]> waiting = OnOwnThread(() => reader.Dequeue(Timeout.InfiniteTimeSpan, Ct));
        await Task.Delay(Short, Ct);
        Assert.False(waiting.IsCompleted);
        // The writer sends one more message and dies: the reader still gets that message, then learns of the death.
        writer.Enqueue(BroadcastMessages.Make(1, 20), Patience, Ct);
        Volatile.Write(ref writerAlive, false);
        Assert.Equal(BroadcastMessages.Make(1, 20), await waiting.WaitAsync(Patience, Ct));

        var clock = Stopwatch.StartNew();
        var died = Assert.Throws<BroadcastPeerDiedException>(() => reader.Dequeue(Timeout.InfiniteTimeSpan, Ct));
        Assert.InRange(clock.Elapsed, TimeSpan.Zero, TimeSpan.FromSeconds(5));
        Assert.Null(died.Reader);
        Assert.Contains("the writer died while reader 0 waited", died.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void AReaderTimesOutWaitingForTheWriter_ThenReadsTheNextMessage()
    {
        using var writer = ShmBroadcastWriter.Create(readerCount: 1, chunkBytes: 16, chunkCount: 4);
        using var reader = ShmBroadcastReader.Open(writer.Name, 0);
        var clock = Stopwatch.StartNew();
        var timeout = Assert.Throws<BroadcastTimeoutException>(() => reader.Dequeue(Short, Ct));
        Assert.InRange(clock.Elapsed, Short, Patience);
        Assert.Empty(timeout.StuckReaders);
        Assert.Contains("reader 0 waited 50 ms for message chunk 1", timeout.Message, StringComparison.Ordinal);
        Assert.Throws<BroadcastTimeoutException>(() => reader.Dequeue(TimeSpan.Zero, Ct));

        writer.Enqueue(BroadcastMessages.Make(0, 30), Patience, Ct);
        Assert.Equal(BroadcastMessages.Make(0, 30), reader.Dequeue(TimeSpan.Zero, Ct));
    }

    [Fact]
    public async Task CancellingAWait_LeavesBothSidesUsable()
    {
        using var writer = ShmBroadcastWriter.Create(readerCount: 1, chunkBytes: 16, chunkCount: 1);
        using var reader = ShmBroadcastReader.Open(writer.Name, 0);
        using (var cancel = new CancellationTokenSource(Short))
        {
            await Assert.ThrowsAnyAsync<OperationCanceledException>(() =>
                OnOwnThread(() => reader.Dequeue(Timeout.InfiniteTimeSpan, cancel.Token)));
        }

        writer.Enqueue(BroadcastMessages.Make(0, 5), Patience, Ct);
        using (var cancel = new CancellationTokenSource(Short))
        {
            // The one chunk is unread, so the writer waits until cancelled.
            await Assert.ThrowsAnyAsync<OperationCanceledException>(() =>
                OnOwnThread(() => writer.Enqueue(BroadcastMessages.Make(1, 5), Timeout.InfiniteTimeSpan, cancel.Token)));
        }

        Assert.Equal(BroadcastMessages.Make(0, 5), reader.Dequeue(Patience, Ct));
        writer.Enqueue(BroadcastMessages.Make(1, 5), Patience, Ct);
        Assert.Equal(BroadcastMessages.Make(1, 5), reader.Dequeue(Patience, Ct));
    }

    [Fact]
    public async Task DisposingTheWriter_ClosesTheQueue_AfterTheReadersGetWhatWasSent()
    {
        var writer = ShmBroadcastWriter.Create(readerCount: 2, chunkBytes: 16, chunkCount: 4);
        using var reader0 = ShmBroadcastReader.Open(writer.Name, 0);
        using var reader1 = ShmBroadcastReader.Open(writer.Name, 1);
        Task<byte[]> waiting = OnOwnThread(() => reader0.Dequeue(Timeout.InfiniteTimeSpan, Ct));
        await Task.Delay(Short, Ct);
        writer.Enqueue(BroadcastMessages.Make(0, 8), Patience, Ct);
        writer.Enqueue(BroadcastMessages.Make(1, 20), Patience, Ct);
        writer.Dispose();
        Assert.Throws<FileNotFoundException>(() => ShmBroadcastReader.Open(writer.Name, 0));

        Assert.Equal(BroadcastMessages.Make(0, 8), await waiting.WaitAsync(Patience, Ct));
        Assert.Equal(BroadcastMessages.Make(1, 20), reader0.Dequeue(Timeout.InfiniteTimeSpan, Ct));
        Assert.Throws<BroadcastQueueClosedException>(() => reader0.Dequeue(Timeout.InfiniteTimeSpan, Ct));
        Assert.Equal(BroadcastMessages.Make(0, 8), reader1.Dequeue(Timeout.InfiniteTimeSpan, Ct));
        Assert.Equal(BroadcastMessages.Make(1, 20), reader1.Dequeue(Timeout.InfiniteTimeSpan, Ct));
        Assert.Throws<BroadcastQueueClosedException>(() => reader1.Dequeue(Timeout.InfiniteTimeSpan, Ct));
        Assert.Throws<ObjectDisposedException>(() => writer.Enqueue([1], Patience, Ct));
    }

    [Fact]
    public async Task DisposingAnEndWhileItWaits_EndsTheWaitFirst()
    {
        // A shutdown handler disposing the queue under a thread that waits on it must not unmap the memory that thread reads.
        var writer = ShmBroadcastWriter.Create(readerCount: 1, chunkBytes: 16, chunkCount: 1);
        var reader = ShmBroadcastReader.Open(writer.Name, 0);
        Task readerWait = OnOwnThread(() => reader.Dequeue(Timeout.InfiniteTimeSpan, Ct));
        await Task.Delay(Short, Ct);
        reader.Dispose();
        await Assert.ThrowsAsync<ObjectDisposedException>(() => readerWait.WaitAsync(Patience, Ct));
        Assert.Throws<ObjectDisposedException>(() => reader.Dequeue(Patience, Ct));

        writer.Enqueue([1, 2, 3], Patience, Ct);
        Task writerWait = OnOwnThread(() => writer.Enqueue([4], Timeout.InfiniteTimeSpan, Ct));
        await Task.Delay(Short, Ct);
        writer.Dispose();
        await Assert.ThrowsAsync<ObjectDisposedException>(() => writerWait.WaitAsync(Patience, Ct));
    }

    [Fact]
    public async Task TwoThreadsOnOneEnd_AreRefused()
    {
        using var writer = ShmBroadcastWriter.Create(readerCount: 1, chunkBytes: 16, chunkCount: 1);
        using var reader = ShmBroadcastReader.Open(writer.Name, 0);
        Task<byte[]> waiting = OnOwnThread(() => reader.Dequeue(Patience, Ct));
        await Task.Delay(Short, Ct);
        var error = Assert.Throws<InvalidOperationException>(() => reader.Dequeue(Patience, Ct));
        Assert.Contains("called from two threads at once", error.Message, StringComparison.Ordinal);

        writer.Enqueue([9], Patience, Ct);
        Assert.Equal([9], await waiting.WaitAsync(Patience, Ct));
    }

    [Fact]
    public async Task AFailurePartWayThroughAMessage_BreaksBothSides()
    {
        // A 40-byte message takes 5 chunks of 8 and the ring holds 2: with reader 1 gone quiet the writer publishes two
        // chunks and times out, and reader 0, which took both, waits for the third until the writer closes.
        var writer = ShmBroadcastWriter.Create(readerCount: 2, chunkBytes: 8, chunkCount: 2);
        using var reader0 = ShmBroadcastReader.Open(writer.Name, 0);
        Task<byte[]> partWay = OnOwnThread(() => reader0.Dequeue(Timeout.InfiniteTimeSpan, Ct));
        var timeout = Assert.Throws<BroadcastTimeoutException>(() => writer.Enqueue(BroadcastMessages.Make(0, 40), Short, Ct));
        Assert.Contains(1, timeout.StuckReaders);
        var broken = Assert.Throws<InvalidOperationException>(() => writer.Enqueue([], Patience, Ct));
        Assert.Same(timeout, broken.InnerException);

        writer.Dispose();
        await Assert.ThrowsAsync<BroadcastQueueClosedException>(() => partWay.WaitAsync(Patience, Ct));
        Assert.IsType<BroadcastQueueClosedException>(Assert.Throws<InvalidOperationException>(() => reader0.Dequeue(Patience, Ct)).InnerException);
    }

    [Fact]
    public void TwoReadersOnOneIndex_AreCaughtRatherThanFedAnotherReadersMessages()
    {
        using var writer = ShmBroadcastWriter.Create(readerCount: 1, chunkBytes: 16, chunkCount: 2);
        using var first = ShmBroadcastReader.Open(writer.Name, 0);
        using var second = ShmBroadcastReader.Open(writer.Name, 0);
        for (int i = 0; i < 3; i++)
        {
            writer.Enqueue(BroadcastMessages.Make(i, 4), Patience, Ct);
            first.Dequeue(Patience, Ct);
        }

        // Slot 0 now holds chunk 3; the second reader still expects chunk 1 there.
        var error = Assert.Throws<InvalidDataException>(() => second.Dequeue(Patience, Ct));
        Assert.Contains("expected message chunk 1 (or 0 before it) in slot 0 but found 3; another reader uses index 0", error.Message, StringComparison.Ordinal);
    }
}
