using System.Buffers;
using Celer.Engine.Distributed;
using static Celer.Engine.Tests.Distributed.BroadcastTestSupport;

namespace Celer.Engine.Tests.Distributed;

/// <summary>The broadcast queue's delivery: every reader gets every message once, in order, byte for byte.</summary>
[Collection(BroadcastTestSupport.Collection)]
public class ShmBroadcastQueueTests
{
    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(30);

    [Fact]
    public async Task EveryReaderSeesEveryMessageOnce_InOrder_OverHundredsOfLaps()
    {
        // Lengths up to ~5 chunks, 0 included, through a ring of 3: a message wraps the ring on its own or shares it.
        const int Readers = 4, Messages = 1000, ChunkBytes = 64, Chunks = 3;
        int[] lengths = BroadcastMessages.Lengths(seed: 1, Messages, max: 300);
        using var writer = ShmBroadcastWriter.Create(Readers, ChunkBytes, Chunks);
        Task<int>[] readers = [.. Enumerable.Range(0, Readers).Select(index => OnOwnThread(() =>
        {
            using var reader = ShmBroadcastReader.Open(writer.Name, index);
            for (int i = 0; i < Messages; i++)
            {
                byte[] message = reader.Dequeue(Patience, Ct);
                if (!message.AsSpan().SequenceEqual(BroadcastMessages.Make(i, lengths[i])))
                {
                    return i;
                }
            }

            return -1;
        }))];

        for (int i = 0; i < Messages; i++)
        {
            writer.Enqueue(BroadcastMessages.Make(i, lengths[i]), Patience, Ct);
        }

        // -1 from every reader: no message differed from the one sent in its place.
        int[] firstMismatches = await Task.WhenAll(readers);
        Assert.Equal([-1, -1, -1, -1], firstMismatches);
        long chunksSent = lengths.Sum(length => Math.Max(1, (length + ChunkBytes - 1) / ChunkBytes));
        Assert.True(chunksSent / Chunks > 500, $"only {chunksSent / Chunks} laps of the ring");
    }

    [Fact]
    public async Task MessagesOfEveryShape_ArriveExactly()
    {
        // Empty, one byte, a chunk less one, exactly a chunk, a chunk and one, the whole ring, five rings and a bit.
        const int ChunkBytes = 64, Chunks = 4;
        int[] lengths = [0, 1, 63, 64, 65, 128, 0, ChunkBytes * Chunks, (ChunkBytes * Chunks * 5) + 3, 0, 7];
        using var writer = ShmBroadcastWriter.Create(readerCount: 2, ChunkBytes, Chunks);
        Task<List<byte[]>>[] readers = [.. Enumerable.Range(0, 2).Select(index => OnOwnThread(() =>
        {
            using var reader = ShmBroadcastReader.Open(writer.Name, index);
            return lengths.Select(_ => reader.Dequeue(Patience, Ct)).ToList();
        }))];

        for (int i = 0; i < lengths.Length; i++)
        {
            writer.Enqueue(BroadcastMessages.Make(i, lengths[i]), Patience, Ct);
        }

        foreach (List<byte[]> received in await Task.WhenAll(readers))
        {
            Assert.Equal(lengths.Select((length, i) => BroadcastMessages.Make(i, length)), received);
        }
    }

    [Fact]
    public void DequeueIntoAReusedBuffer_AllocatesNothing()
    {
        // A decode step's broadcast must not allocate: Enqueue never does, Dequeue into a buffer the worker reuses neither.
        using var writer = ShmBroadcastWriter.Create(readerCount: 1, chunkBytes: 64, chunkCount: 4);
        using var reader = ShmBroadcastReader.Open(writer.Name, 0);
        var buffer = new ArrayBufferWriter<byte>(1024);
        byte[] small = BroadcastMessages.Make(1, 40), large = BroadcastMessages.Make(2, 150);
        CancellationToken ct = Ct; // read once: xunit's TestContext.Current allocates
        void Round()
        {
            writer.Enqueue(small, Patience, ct);
            writer.Enqueue(large, Patience, ct);
            buffer.ResetWrittenCount();
            reader.Dequeue(buffer, Patience, ct);
            reader.Dequeue(buffer, Patience, ct);
        }

        Round();
        Assert.Equal([.. small, .. large], buffer.WrittenSpan.ToArray());
        long before = GC.GetAllocatedBytesForCurrentThread();
        for (int i = 0; i < 100; i++)
        {
            Round();
        }

        Assert.Equal(0, GC.GetAllocatedBytesForCurrentThread() - before);
        Assert.Equal([.. small, .. large], buffer.WrittenSpan.ToArray());
    }

    [Fact]
    public void TheQueueIsAPrivateFileOfItsExactSize_DeletedOnDispose()
    {
        if (!OperatingSystem.IsLinux())
        {
            Assert.Skip("the queue lives in /dev/shm on Linux");
            return;
        }

        var writer = ShmBroadcastWriter.Create(readerCount: 3, chunkBytes: 1000, chunkCount: 5);
        string path = Path.Combine("/dev/shm", writer.Name);
        Assert.Matches($"^celer-broadcast-{Environment.ProcessId}-[0-9a-f]{{32}}$", writer.Name);
        // Per chunk: the writer's 128-byte line, the read flags (3 × 8 bytes) in 128, the data (1000) in 1024; a 128-byte header.
        Assert.Equal(128 + (5 * (128 + 128 + 1024)), new FileInfo(path).Length);
        Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(path));
        writer.Dispose();
        Assert.False(File.Exists(path));
    }
}
