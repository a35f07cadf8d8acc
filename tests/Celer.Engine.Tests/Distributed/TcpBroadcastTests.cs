using System.Buffers.Binary;
using System.Collections.Concurrent;
using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Text;
using Celer.Engine.Distributed;
using static Celer.Engine.Tests.Distributed.BroadcastTestSupport;

namespace Celer.Engine.Tests.Distributed;

/// <summary>
/// Rank 0's broadcast to ranks on other hosts, over real TCP connections on the loopback: every rank gets every message
/// in order, byte for byte; replies carry their rank; a rank that hangs up or stops reading is named; the close comes
/// after everything; and strays, refused ranks and corrupt frames from either side end in clear errors, never a hang.
/// </summary>
[Collection(BroadcastTestSupport.Collection)]
public class TcpBroadcastTests
{
    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(30);
    private static readonly TimeSpan Short = TimeSpan.FromMilliseconds(50);

    // More than the loopback's socket buffers hold (Linux autotunes them to at most 4 MiB sending, 32 MiB receiving).
    private const int Huge = 96 << 20;

    [Fact]
    public async Task EveryReaderGetsEveryMessage_InOrder_ByteForByte()
    {
        // Mostly a decode step's size, every 16th up to 6 MB, the first empty: small ones go out staged, large ones streamed.
        const int Messages = 400;
        int[] lengths = BroadcastMessages.Lengths(seed: 11, Messages, max: 20_000);
        int[] large = BroadcastMessages.Lengths(seed: 12, Messages / 16, max: 6_000_000);
        for (int i = 0; i < large.Length; i++)
        {
            lengths[i * 16] = large[i];
        }

        lengths[0] = 0;
        using Group group = await StartGroup(1, 2, 3);
        Task<int>[] readers = [.. group.Clients.Select(client => OnOwnThread(() => FirstMismatch(client, lengths)))];
        for (int i = 0; i < Messages; i++)
        {
            group.Server.Enqueue(BroadcastMessages.Make(i, lengths[i]), Patience, Ct);
        }

        // -1 from every reader: no message differed from the one sent in its place.
        int[] firstMismatches = await Task.WhenAll(readers).WaitAsync(Patience, Ct);
        Assert.Equal([-1, -1, -1], firstMismatches);
    }

    [Fact]
    public async Task MessagesOfEveryShape_ArriveExactly()
    {
        // Empty; the largest staged frame and one past it; around the read-ahead buffer; past the size whose array the
        // client allocates whole (the rest grows as it arrives); and small ones between.
        int staged = TcpBroadcastServer.StagingBytes - TcpBroadcastFrames.HeaderBytes, readAhead = TcpBroadcastClient.ReadAheadBytes;
        int[] lengths = [0, 1, 8, staged, staged + 1, 0, readAhead - 1, readAhead, readAhead + 1, 5, TcpBroadcastClient.TrustedMessageBytes + 3, 0, 7];
        using Group group = await StartGroup(1, 2);
        Task<int>[] readers = [.. group.Clients.Select(client => OnOwnThread(() => FirstMismatch(client, lengths)))];
        for (int i = 0; i < lengths.Length; i++)
        {
            group.Server.Enqueue(BroadcastMessages.Make(i, lengths[i]), Patience, Ct);
        }

        int[] firstMismatches = await Task.WhenAll(readers).WaitAsync(Patience, Ct);
        Assert.Equal([-1, -1], firstMismatches);
    }

    [Fact]
    public async Task ADecodeStepsMessage_IsSentWithoutAllocating()
    {
        using Group group = await StartGroup(1, 2);
        byte[] step = BroadcastMessages.Make(7, 3000);
        const int Steps = 200;
        Task<int>[] readers = [.. group.Clients.Select(client => OnOwnThread(() =>
            Enumerable.Range(0, Steps + 1).Count(_ => client.Dequeue(Patience, Ct).AsSpan().SequenceEqual(step))))];
        CancellationToken ct = Ct; // read once: xunit's TestContext.Current allocates
        group.Server.Enqueue(step, Patience, ct);
        long before = GC.GetAllocatedBytesForCurrentThread();
        for (int i = 0; i < Steps; i++)
        {
            group.Server.Enqueue(step, Patience, ct);
        }

        Assert.Equal(0, GC.GetAllocatedBytesForCurrentThread() - before);
        int[] received = await Task.WhenAll(readers).WaitAsync(Patience, Ct);
        Assert.Equal([Steps + 1, Steps + 1], received);
    }

    [Fact]
    public async Task Replies_ArriveWithTheirRank_InOrder()
    {
        var replies = new ConcurrentQueue<(int Rank, string Text)>();
        var server = TcpBroadcastServer.Listen(new IPEndPoint(IPAddress.Loopback, 0));
        server.Reply += (rank, text) => replies.Enqueue((rank, text));
        using var group = new Group(server, await Join(server, 1, 2, 3));
        static string Text(int rank, int k) => k == 0 ? "" : $"rank {rank}, reply {k}: ready ✓ — Größe 東京";
        await Task.WhenAll(group.Clients.Select(client => OnOwnThread(() =>
        {
            for (int k = 0; k < 20; k++)
            {
                client.Reply(Text(client.Rank, k));
            }
        })));

        await WaitUntil(() => replies.Count == 60);
        foreach (int rank in new[] { 1, 2, 3 })
        {
            Assert.Equal(Enumerable.Range(0, 20).Select(k => Text(rank, k)), replies.Where(reply => reply.Rank == rank).Select(reply => reply.Text));
        }

        Assert.Throws<ArgumentException>(() => group.Clients[0].Reply(new string('x', TcpBroadcastFrames.MaxReplyBytes + 1)));
    }

    [Fact]
    public async Task AReaderThatHangsUp_IsReportedOnce_AndEnqueueNamesIt()
    {
        var disconnects = new ConcurrentQueue<(int Rank, Exception Why)>();
        var server = TcpBroadcastServer.Listen(new IPEndPoint(IPAddress.Loopback, 0));
        server.Disconnected += (rank, why) => disconnects.Enqueue((rank, why));
        using var group = new Group(server, await Join(server, 1, 2));
        TcpBroadcastClient[] clients = group.Clients;
        server.Enqueue(BroadcastMessages.Make(0, 10), Patience, Ct);
        Assert.All(clients, client => Assert.Equal(BroadcastMessages.Make(0, 10), client.Dequeue(Patience, Ct)));
        clients[1].Dispose();

        await WaitUntil(() => !disconnects.IsEmpty);
        var died = Assert.Throws<BroadcastPeerDiedException>(() => server.Enqueue(BroadcastMessages.Make(1, 10), Patience, Ct));
        Assert.Equal(2, died.Reader);
        Assert.Matches(@"^Rank 2 \(127\.0\.0\.1:\d+\) is gone: it closed its connection\.$", died.Message);
        // Nothing of message 1 was sent, to anyone: the failure left rank 1 where it was.
        Assert.Throws<BroadcastTimeoutException>(() => clients[0].Dequeue(Short, Ct));
        await Task.Delay(Short, Ct);
        Assert.Equal([2], disconnects.Select(d => d.Rank));
    }

    [Fact]
    public async Task AReaderThatHangsUpWhileTheWriterWaitsForIt_EndsTheWait_NamingIt_AndBreaksTheQueue()
    {
        var server = TcpBroadcastServer.Listen(new IPEndPoint(IPAddress.Loopback, 0));
        using (server)
        {
            // Rank 1 reads; rank 2, a raw socket here, takes the first bytes of the message and then no more, so a message
            // larger than its socket's buffers keeps the writer waiting, part of it sent to rank 2.
            (TcpBroadcastClient client, Socket raw) = await AdmitClientAndRawReader(server);
            using TcpBroadcastClient one = client;
            using Socket two = raw;

            Task<byte[]> rankOne = OnOwnThread(() => one.Dequeue(Patience, Ct));
            Task blocked = OnOwnThread(() => server.Enqueue(BroadcastMessages.Make(0, Huge), Timeout.InfiniteTimeSpan, Ct));
            byte[] start = new byte[TcpBroadcastFrames.HeaderBytes + 1];
            for (int got = 0; got < start.Length;)
            {
                got += await two.ReceiveAsync(start.AsMemory(got), Ct).AsTask().WaitAsync(Patience, Ct);
            }

            Assert.False(blocked.IsCompleted, "the writer sent a message larger than the socket buffers to a rank that read a byte of it");
            var clock = Stopwatch.StartNew();
            two.Dispose();
            var died = await Assert.ThrowsAsync<BroadcastPeerDiedException>(() => blocked.WaitAsync(Patience, Ct));
            Assert.InRange(clock.Elapsed, TimeSpan.Zero, TimeSpan.FromSeconds(5));
            Assert.Equal(2, died.Reader);
            // Rank 2 got part of the message, so the queue cannot go on.
            Assert.Contains("cut off part-way", Assert.Throws<InvalidOperationException>(() => server.Enqueue(BroadcastMessages.Make(1, 10), Patience, Ct)).Message, StringComparison.Ordinal);
            // Rank 1, served in turn with rank 2 rather than after it, may have the whole message by now, or part of it.
            one.Dispose();
            _ = rankOne;
        }
    }

    [Fact]
    public async Task AReaderThatTakesNoData_TimesOut_Named()
    {
        using Group group = await StartGroup(1, 2);
        Task<byte[]> rankTwo = OnOwnThread(() => group.Clients[1].Dequeue(Patience, Ct));
        var clock = Stopwatch.StartNew();
        // 2 s without data names a rank: long enough that rank 2's reading thread, starved on a loaded machine, still
        // takes some of the message in every such window, so only rank 1 is named.
        var timeout = Assert.Throws<BroadcastTimeoutException>(() => group.Server.Enqueue(BroadcastMessages.Make(0, Huge), TimeSpan.FromSeconds(2), Ct));
        Assert.InRange(clock.Elapsed, TimeSpan.FromSeconds(2), Patience);
        Assert.Equal([1], timeout.StuckReaders);
        Assert.Matches(@"^Rank\(s\) 1 took none of the message for 2000 ms \(rank 1 has \d+ of its 100663304 bytes\)", timeout.Message);
        // Rank 1 holds its socket buffers' worth of the message, so the queue cannot go on.
        Assert.Contains("cut off part-way", Assert.Throws<InvalidOperationException>(() => group.Server.Enqueue(BroadcastMessages.Make(1, 10), Patience, Ct)).Message, StringComparison.Ordinal);
        // Rank 2 read all along: it has the whole message, unless its thread, starved on a loaded machine (CI, 2026-12-02),
        // was still behind when the writer gave up; then it sees rank 0 hang up in the middle of the message, never a hang.
        // (Rank 1 leaves first: the server's dispose waits for every rank to hang up.)
        group.Clients[0].Dispose();
        group.Server.Dispose();
        try
        {
            Assert.Equal(BroadcastMessages.Make(0, Huge), await rankTwo.WaitAsync(Patience, Ct));
        }
        catch (BroadcastPeerDiedException cut)
        {
            Assert.Contains("hung up in the middle of a message", cut.Message, StringComparison.Ordinal);
        }
    }

    [Fact]
    public async Task TheClose_ReachesEveryReader_AfterAllMessages_AndDisposeReturnsOnceTheyHangUp()
    {
        int[] lengths = BroadcastMessages.Lengths(seed: 3, count: 60, max: 200_000);
        var disconnects = new ConcurrentQueue<int>();
        var server = TcpBroadcastServer.Listen(new IPEndPoint(IPAddress.Loopback, 0));
        server.Disconnected += (rank, _) => disconnects.Enqueue(rank);
        TcpBroadcastClient[] clients = await Join(server, 1, 2);
        var disposing = Stopwatch.StartNew();
        Task writer = OnOwnThread(() =>
        {
            for (int i = 0; i < lengths.Length; i++)
            {
                server.Enqueue(BroadcastMessages.Make(i, lengths[i]), Patience, Ct);
            }

            disposing.Restart();
            server.Dispose();
            disposing.Stop();
        });

        // The readers start late, so the close is queued behind messages they have not read yet.
        await Task.Delay(TimeSpan.FromMilliseconds(200), Ct);
        Task<int>[] readers = [.. clients.Select(client => OnOwnThread(() =>
        {
            int mismatch = FirstMismatch(client, lengths);
            Assert.Throws<BroadcastQueueClosedException>(() => client.Dequeue(Patience, Ct));
            Assert.Throws<BroadcastQueueClosedException>(() => client.Dequeue(Patience, Ct));
            Assert.Throws<BroadcastQueueClosedException>(() => client.Reply("too late"));
            return mismatch;
        }))];

        int[] firstMismatches = await Task.WhenAll(readers).WaitAsync(Patience, Ct);
        Assert.Equal([-1, -1], firstMismatches);
        await writer.WaitAsync(Patience, Ct);
        // The readers hung up on reading the close; Dispose waits up to 10 s for that, and no longer than it takes.
        Assert.InRange(disposing.Elapsed, TimeSpan.Zero, TimeSpan.FromSeconds(5));
        Assert.Empty(disconnects);
        Array.ForEach(clients, client => client.Dispose());
    }

    [Fact]
    public async Task AReaderStartedBeforeTheServer_TriesUntilItListens()
    {
        int port = FreePort();
        Task<TcpBroadcastClient> joining = OnOwnThread(() => TcpBroadcastClient.Connect("127.0.0.1", port, 1, Patience));
        await Task.Delay(TimeSpan.FromMilliseconds(500), Ct);
        Assert.False(joining.IsCompleted);

        using var server = TcpBroadcastServer.Listen(new IPEndPoint(IPAddress.Loopback, port));
        Assert.Equal(port, server.LocalEndPoint.Port);
        server.WaitForReaders([1], Patience);
        using TcpBroadcastClient client = await joining.WaitAsync(Patience, Ct);
        Assert.Equal($"127.0.0.1:{port}", client.Server);
        server.Enqueue(BroadcastMessages.Make(0, 100), Patience, Ct);
        Assert.Equal(BroadcastMessages.Make(0, 100), client.Dequeue(Patience, Ct));
    }

    [Fact]
    public void AReaderWithNothingToJoin_TimesOut_SayingWhy()
    {
        int port = FreePort();
        var clock = Stopwatch.StartNew();
        var timeout = Assert.Throws<BroadcastTimeoutException>(() => TcpBroadcastClient.Connect("127.0.0.1", port, 3, TimeSpan.FromMilliseconds(700)));
        Assert.InRange(clock.Elapsed, TimeSpan.FromMilliseconds(700), Patience);
        Assert.Contains($"Rank 3 could not join rank 0 at 127.0.0.1:{port} within 0.7 s: connecting to 127.0.0.1:{port} failed", timeout.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task DuplicateUnknownAndLateRanks_AreRefused_WithTheReason()
    {
        using var server = TcpBroadcastServer.Listen(new IPEndPoint(IPAddress.Loopback, 0));
        int port = server.LocalEndPoint.Port;
        Task waiting = OnOwnThread(() => server.WaitForReaders([1, 2], Patience));
        using TcpBroadcastClient one = TcpBroadcastClient.Connect("127.0.0.1", port, 1, Patience);

        var duplicate = Assert.Throws<InvalidOperationException>(() => TcpBroadcastClient.Connect("127.0.0.1", port, 1, Patience));
        Assert.Matches(@"^Rank 0 at 127\.0\.0\.1:\d+ refused rank 1: rank 1 is connected already, from 127\.0\.0\.1:\d+\.$", duplicate.Message);
        var unknown = Assert.Throws<InvalidOperationException>(() => TcpBroadcastClient.Connect("127.0.0.1", port, 5, Patience));
        Assert.EndsWith("refused rank 5: rank 5 is not one rank 0 waits for here (it waits for 1, 2).", unknown.Message, StringComparison.Ordinal);
        Assert.False(waiting.IsCompleted);

        using TcpBroadcastClient two = TcpBroadcastClient.Connect("127.0.0.1", port, 2, Patience);
        await waiting.WaitAsync(Patience, Ct);
        var late = Assert.Throws<InvalidOperationException>(() => TcpBroadcastClient.Connect("127.0.0.1", port, 2, Patience));
        Assert.EndsWith("refused rank 2: rank 0 takes no more ranks: it has its whole group.", late.Message, StringComparison.Ordinal);

        server.Enqueue(BroadcastMessages.Make(0, 5), Patience, Ct);
        Assert.Equal(BroadcastMessages.Make(0, 5), one.Dequeue(Patience, Ct));
        Assert.Equal(BroadcastMessages.Make(0, 5), two.Dequeue(Patience, Ct));
    }

    [Fact]
    public async Task WaitingForReaders_TimesOut_NamingTheMissing_ThenTakesNoMore()
    {
        using var server = TcpBroadcastServer.Listen(new IPEndPoint(IPAddress.Loopback, 0));
        int port = server.LocalEndPoint.Port;
        Task<TcpBroadcastClient> two = OnOwnThread(() => TcpBroadcastClient.Connect("127.0.0.1", port, 2, Patience));
        var clock = Stopwatch.StartNew();
        var timeout = Assert.Throws<BroadcastTimeoutException>(() => server.WaitForReaders([3, 2, 1], TimeSpan.FromMilliseconds(500)));
        Assert.InRange(clock.Elapsed, TimeSpan.FromMilliseconds(500), Patience);
        Assert.Equal([1, 3], timeout.StuckReaders);
        Assert.Equal($"Rank(s) 1, 3 did not connect to rank 0 at 127.0.0.1:{port} within 0.5 s.", timeout.Message);
        (await two.WaitAsync(Patience, Ct)).Dispose();

        var late = Assert.Throws<InvalidOperationException>(() => TcpBroadcastClient.Connect("127.0.0.1", port, 1, Patience));
        Assert.EndsWith("refused rank 1: rank 0 takes no more ranks: it stopped waiting for them.", late.Message, StringComparison.Ordinal);
        Assert.Throws<InvalidOperationException>(() => server.WaitForReaders([1], Patience));
        Assert.Throws<InvalidOperationException>(() => server.Enqueue([1, 2, 3], Patience, Ct));
    }

    [Fact]
    public async Task ARankLostBeforeTheGroupIsComplete_EndsTheWait_AndIsNotTakenAgain()
    {
        using var server = TcpBroadcastServer.Listen(new IPEndPoint(IPAddress.Loopback, 0));
        int port = server.LocalEndPoint.Port;
        Task waiting = OnOwnThread(() => server.WaitForReaders([1, 2], Timeout.InfiniteTimeSpan));
        TcpBroadcastClient.Connect("127.0.0.1", port, 1, Patience).Dispose();

        var died = await Assert.ThrowsAsync<BroadcastPeerDiedException>(() => waiting.WaitAsync(Patience, Ct));
        Assert.Equal(1, died.Reader);
        Assert.Matches(@"^Rank 1 \(127\.0\.0\.1:\d+\) is gone: it closed its connection\.$", died.Message);
        var again = Assert.Throws<InvalidOperationException>(() => TcpBroadcastClient.Connect("127.0.0.1", port, 1, Patience));
        Assert.EndsWith("refused rank 1: rank 0 takes no more ranks: it stopped waiting for them.", again.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task StraysOnThePort_AreTurnedAway_AndDoNotBreakTheServer()
    {
        var server = TcpBroadcastServer.Listen(new IPEndPoint(IPAddress.Loopback, 0));
        var disconnects = new ConcurrentQueue<int>();
        server.Disconnected += (rank, _) => disconnects.Enqueue(rank);
        IPEndPoint endpoint = server.LocalEndPoint;

        // A port check: connects and hangs up.
        using (Socket check = await RawConnect(endpoint))
        {
            check.Shutdown(SocketShutdown.Both);
        }

        // Another protocol (16 bytes: a whole hello's worth) is told what this port is.
        using Socket http = await RawConnect(endpoint);
        http.Send("GET / HTTP/1.1\r\n"u8);
        Assert.Contains("this port serves Celer's tensor-parallel broadcast", await ReadRefusal(http), StringComparison.Ordinal);

        // A hello of another protocol version is refused, naming both.
        using Socket otherVersion = await RawConnect(endpoint);
        byte[] hello = new byte[TcpBroadcastFrames.HelloBytes];
        TcpBroadcastFrames.WriteHello(hello, rank: 1);
        BinaryPrimitives.WriteInt32LittleEndian(hello.AsSpan(8), 99);
        otherVersion.Send(hello);
        Assert.Contains("rank 0 speaks broadcast protocol version 1, rank 1 version 99", await ReadRefusal(otherVersion), StringComparison.Ordinal);

        // Random bytes, half a hello, and one that connects and says nothing, left open while the real ranks join.
        using (Socket noise = await RawConnect(endpoint))
        {
            noise.Send(RandomBytes(1000));
        }

        using (Socket half = await RawConnect(endpoint))
        {
            half.Send(hello.AsSpan(0, 10));
        }

        using Socket silent = await RawConnect(endpoint);

        using var group = new Group(server, await Join(server, 1, 2));
        server.Enqueue(BroadcastMessages.Make(0, 1000), Patience, Ct);
        Assert.All(group.Clients, client => Assert.Equal(BroadcastMessages.Make(0, 1000), client.Dequeue(Patience, Ct)));
        Assert.Empty(disconnects);
    }

    [Fact]
    public async Task ADequeueTimesOut_ThenReadsTheNextMessage()
    {
        using Group group = await StartGroup(4);
        TcpBroadcastClient client = group.Clients[0];
        var clock = Stopwatch.StartNew();
        var timeout = Assert.Throws<BroadcastTimeoutException>(() => client.Dequeue(Short, Ct));
        Assert.InRange(clock.Elapsed, Short, Patience);
        Assert.Empty(timeout.StuckReaders);
        Assert.Matches(@"^Rank 4 waited 50 ms for the next message from rank 0 at 127\.0\.0\.1:\d+\.$", timeout.Message);
        Assert.Throws<BroadcastTimeoutException>(() => client.Dequeue(TimeSpan.Zero, Ct));

        group.Server.Enqueue(BroadcastMessages.Make(0, 30), Patience, Ct);
        Assert.Equal(BroadcastMessages.Make(0, 30), client.Dequeue(Patience, Ct));
    }

    [Fact]
    public async Task DisposingAReader_EndsItsWait()
    {
        using Group group = await StartGroup(1);
        Task<byte[]> waiting = OnOwnThread(() => group.Clients[0].Dequeue(Timeout.InfiniteTimeSpan, Ct));
        await Task.Delay(Short, Ct);
        var clock = Stopwatch.StartNew();
        group.Clients[0].Dispose();
        await Assert.ThrowsAsync<ObjectDisposedException>(() => waiting.WaitAsync(Patience, Ct));
        // The wait checks for disposal every 10 ms; 5 s leaves room for a loaded machine, far below the infinite wait.
        Assert.InRange(clock.Elapsed, TimeSpan.Zero, TimeSpan.FromSeconds(5));
    }

    [Fact]
    public async Task AMessageCutByATimeout_IsFinishedByTheNextDequeue()
    {
        using var fake = new FakeRankZero();
        Task<TcpBroadcastClient> joining = OnOwnThread(() => TcpBroadcastClient.Connect("127.0.0.1", fake.Port, 1, Patience));
        Socket rankZero = await fake.AcceptAsync();
        using TcpBroadcastClient client = await joining.WaitAsync(Patience, Ct);

        byte[] message = BroadcastMessages.Make(0, 300_000);
        byte[] frame = Frame(3, message.Length, message);
        rankZero.Send(frame.AsSpan(0, 100_000));
        Assert.Throws<BroadcastTimeoutException>(() => client.Dequeue(Short, Ct));
        Assert.Contains("the rest of a message", Assert.Throws<BroadcastTimeoutException>(() => client.Dequeue(Short, Ct)).Message, StringComparison.Ordinal);
        rankZero.Send(frame.AsSpan(100_000));
        Assert.Equal(message, client.Dequeue(Patience, Ct));
    }

    [Fact]
    public async Task RankZeroHangingUpWithoutTheClose_IsItsDeath()
    {
        using var fake = new FakeRankZero();
        Task<TcpBroadcastClient> joining = OnOwnThread(() => TcpBroadcastClient.Connect("127.0.0.1", fake.Port, 1, Patience));
        Socket rankZero = await fake.AcceptAsync();
        using TcpBroadcastClient client = await joining.WaitAsync(Patience, Ct);
        rankZero.Send(Frame(3, 4, [1, 2, 3, 4]));
        rankZero.Shutdown(SocketShutdown.Both);

        Assert.Equal([1, 2, 3, 4], client.Dequeue(Patience, Ct));
        var died = Assert.Throws<BroadcastPeerDiedException>(() => client.Dequeue(Timeout.InfiniteTimeSpan, Ct));
        Assert.Null(died.Reader);
        Assert.Contains("hung up without closing the broadcast", died.Message, StringComparison.Ordinal);
        Assert.Same(died, Assert.Throws<BroadcastPeerDiedException>(() => client.Dequeue(Patience, Ct)));
    }

    [Fact]
    public async Task AHeaderClaimingGigabytes_CostsOnlyWhatArrives()
    {
        using var fake = new FakeRankZero();
        Task<TcpBroadcastClient> joining = OnOwnThread(() => TcpBroadcastClient.Connect("127.0.0.1", fake.Port, 1, Patience));
        Socket rankZero = await fake.AcceptAsync();
        using TcpBroadcastClient client = await joining.WaitAsync(Patience, Ct);
        rankZero.Send(Frame(3, Array.MaxLength, new byte[1000]));
        rankZero.Shutdown(SocketShutdown.Both);

        long before = GC.GetAllocatedBytesForCurrentThread();
        var died = Assert.Throws<BroadcastPeerDiedException>(() => client.Dequeue(Patience, Ct));
        Assert.InRange(GC.GetAllocatedBytesForCurrentThread() - before, 0, TcpBroadcastClient.TrustedMessageBytes + (1 << 20));
        Assert.Contains("hung up in the middle of a message", died.Message, StringComparison.Ordinal);
    }

    // An unknown kind, a reply (which only ranks send), padding that is not zero, a length no array holds, a close with a payload.
    public static TheoryData<byte[], string> CorruptFrames => new()
    {
        { Frame(0x77, 0, []), "is not one of Message, Close" },
        { Frame(5, 0, []), "is not one of Message, Close" },
        { [3, 0, 1, 0, 0, 0, 0, 0], "is not one of Message, Close" },
        { Frame(3, -1, []), $"sent a Message frame of {uint.MaxValue} bytes; at most {Array.MaxLength} are allowed" },
        { Frame(4, 5, [1, 2, 3, 4, 5]), "sent a Close frame of 5 bytes; at most 0 are allowed" },
    };

    [Theory]
    [MemberData(nameof(CorruptFrames))]
    public async Task ACorruptFrameFromRankZero_IsAClearError_AndFinal(byte[] frame, string error)
    {
        using var fake = new FakeRankZero();
        Task<TcpBroadcastClient> joining = OnOwnThread(() => TcpBroadcastClient.Connect("127.0.0.1", fake.Port, 1, Patience));
        Socket rankZero = await fake.AcceptAsync();
        using TcpBroadcastClient client = await joining.WaitAsync(Patience, Ct);
        rankZero.Send(Frame(3, 2, [9, 9]));
        rankZero.Send(frame);

        Assert.Equal([9, 9], client.Dequeue(Patience, Ct));
        var corrupt = Assert.Throws<InvalidDataException>(() => client.Dequeue(Patience, Ct));
        Assert.Contains(error, corrupt.Message, StringComparison.Ordinal);
        Assert.Contains("rank 0 at 127.0.0.1:", corrupt.Message, StringComparison.Ordinal);
        Assert.Same(corrupt, Assert.Throws<InvalidDataException>(() => client.Dequeue(Patience, Ct)));
    }

    [Fact]
    public async Task SomethingElseAnsweringTheHello_IsNotTakenForRankZero()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        int port = ((IPEndPoint)listener.LocalEndpoint).Port;
        Task<TcpBroadcastClient> joining = OnOwnThread(() => TcpBroadcastClient.Connect("127.0.0.1", port, 1, Patience));
        using Socket other = await listener.AcceptSocketAsync(Ct);
        other.Send("HTTP/1.1 400 Bad Request\r\n\r\n"u8);
        var error = await Assert.ThrowsAsync<InvalidDataException>(() => joining.WaitAsync(Patience, Ct));
        Assert.Contains($"rank 0 at 127.0.0.1:{port} sent a frame header 485454502F312E31", error.Message, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("a reply of 100 MB", "sent a Reply frame of 104857600 bytes; at most 1048576 are allowed")]
    [InlineData("a reply not in UTF-8", "sent text that is not UTF-8")]
    [InlineData("a message frame", "is not one of Reply")]
    public async Task AReaderBreakingTheProtocol_IsCutOff_AndReported(string what, string error)
    {
        var server = TcpBroadcastServer.Listen(new IPEndPoint(IPAddress.Loopback, 0));
        // Continuations elsewhere: the test must not go on (and dispose the server) on the server's own receiving thread.
        var disconnected = new TaskCompletionSource<(int Rank, Exception Why)>(TaskCreationOptions.RunContinuationsAsynchronously);
        server.Disconnected += (rank, why) => disconnected.TrySetResult((rank, why));
        using (server)
        {
            (TcpBroadcastClient client, Socket raw) = await AdmitClientAndRawReader(server);
            using TcpBroadcastClient one = client;
            using Socket two = raw;

            two.Send(what switch
            {
                "a reply of 100 MB" => Frame(5, 100 << 20, new byte[1000]),
                "a reply not in UTF-8" => Frame(5, 3, [0x61, 0xFF, 0x62]),
                _ => Frame(3, 0, []),
            });
            (int rank, Exception why) = await disconnected.Task.WaitAsync(Patience, Ct);
            Assert.Equal(2, rank);
            Assert.IsType<InvalidDataException>(why);
            Assert.Contains(error, why.Message, StringComparison.Ordinal);
            Assert.Equal(2, Assert.Throws<BroadcastPeerDiedException>(() => server.Enqueue([1], Patience, Ct)).Reader);
            // Rank 0 hung up on it.
            Assert.Equal(0, await two.ReceiveAsync(new byte[16], Ct));
        }
    }

    private static int FirstMismatch(TcpBroadcastClient client, int[] lengths)
    {
        for (int i = 0; i < lengths.Length; i++)
        {
            if (!client.Dequeue(Patience, Ct).AsSpan().SequenceEqual(BroadcastMessages.Make(i, lengths[i])))
            {
                return i;
            }
        }

        return -1;
    }

    /// <summary>A server on a free loopback port and its ranks, joined.</summary>
    private static async Task<Group> StartGroup(params int[] ranks)
    {
        var server = TcpBroadcastServer.Listen(new IPEndPoint(IPAddress.Loopback, 0));
        try
        {
            return new Group(server, await Join(server, ranks));
        }
        catch
        {
            server.Dispose();
            throw;
        }
    }

    /// <summary>Connects <paramref name="ranks"/>, each on its own thread, while the server waits for them; in rank order.</summary>
    private static async Task<TcpBroadcastClient[]> Join(TcpBroadcastServer server, params int[] ranks)
    {
        Task<TcpBroadcastClient>[] joining = [.. ranks.Select(rank => OnOwnThread(() => TcpBroadcastClient.Connect("127.0.0.1", server.LocalEndPoint.Port, rank, Patience)))];
        server.WaitForReaders(ranks, Patience);
        return await Task.WhenAll(joining).WaitAsync(Patience, Ct);
    }


    private static async Task WaitUntil(Func<bool> condition)
    {
        var clock = Stopwatch.StartNew();
        while (!condition())
        {
            Assert.True(clock.Elapsed < Patience, "the condition did not come true in time");
            await Task.Delay(10, Ct);
        }
    }

    private static int FreePort()
    {
        using var probe = new TcpListener(IPAddress.Loopback, 0);
        probe.Start();
        return ((IPEndPoint)probe.LocalEndpoint).Port;
    }

    /// <summary>
    /// Rank 1 as a client and rank 2 as a raw socket that said hello and read the server's welcome, both admitted: the
    /// tests then play rank 2's side of the protocol by hand.
    /// </summary>
    private static async Task<(TcpBroadcastClient One, Socket Two)> AdmitClientAndRawReader(TcpBroadcastServer server)
    {
        Task waiting = OnOwnThread(() => server.WaitForReaders([1, 2], Patience));
        TcpBroadcastClient one = TcpBroadcastClient.Connect("127.0.0.1", server.LocalEndPoint.Port, 1, Patience);
        Socket? two = null;
        try
        {
            two = await RawConnect(server.LocalEndPoint);
            byte[] hello = new byte[TcpBroadcastFrames.HelloBytes];
            TcpBroadcastFrames.WriteHello(hello, rank: 2);
            two.Send(hello);
            byte[] answer = new byte[TcpBroadcastFrames.HeaderBytes];
            await two.ReceiveAsync(answer, Ct);
            Assert.Equal(Frame(1, 0, []), answer);
            await waiting.WaitAsync(Patience, Ct);
            return (one, two);
        }
        catch
        {
            two?.Dispose();
            one.Dispose();
            throw;
        }
    }

    private static async Task<Socket> RawConnect(IPEndPoint endpoint)
    {
        var socket = new Socket(endpoint.AddressFamily, SocketType.Stream, ProtocolType.Tcp);
        await socket.ConnectAsync(endpoint, Ct);
        return socket;
    }

    /// <summary>Reads a refusal frame to its end and returns its reason.</summary>
    private static async Task<string> ReadRefusal(Socket socket)
    {
        var received = new List<byte>();
        byte[] buffer = new byte[4096];
        for (int n; (n = await socket.ReceiveAsync(buffer, Ct).AsTask().WaitAsync(Patience, Ct)) > 0;)
        {
            received.AddRange(buffer.AsSpan(0, n));
        }

        byte[] answer = [.. received];
        Assert.Equal(2, answer[0]); // Refused
        Assert.Equal(answer.Length - TcpBroadcastFrames.HeaderBytes, BinaryPrimitives.ReadInt32LittleEndian(answer.AsSpan(4)));
        return Encoding.UTF8.GetString(answer, TcpBroadcastFrames.HeaderBytes, answer.Length - TcpBroadcastFrames.HeaderBytes);
    }

    /// <summary>A frame as the wire has it, written here byte by byte rather than through the code under test.</summary>
    private static byte[] Frame(byte kind, int length, byte[] payload)
    {
        byte[] frame = new byte[TcpBroadcastFrames.HeaderBytes + payload.Length];
        frame[0] = kind;
        BinaryPrimitives.WriteInt32LittleEndian(frame.AsSpan(4), length);
        payload.CopyTo(frame, TcpBroadcastFrames.HeaderBytes);
        return frame;
    }

    private static byte[] RandomBytes(int count)
    {
        byte[] bytes = new byte[count];
        new Random(5).NextBytes(bytes);
        return bytes;
    }

    /// <summary>A server and its ranks. The ranks hang up first: a server disposed first would wait for them to read its
    /// close, and these tests' ranks are not reading by then.</summary>
    private sealed class Group(TcpBroadcastServer server, TcpBroadcastClient[] clients) : IDisposable
    {
        public TcpBroadcastServer Server { get; } = server;

        public TcpBroadcastClient[] Clients { get; } = clients;

        public void Dispose()
        {
            Array.ForEach(Clients, client => client.Dispose());
            Server.Dispose();
        }
    }

    /// <summary>A rank 0 under the test's control: it takes one client's hello, accepts it, and then sends whatever the
    /// test writes to the socket, so the client can be shown what the real server never sends.</summary>
    private sealed class FakeRankZero : IDisposable
    {
        private readonly TcpListener _listener = new(IPAddress.Loopback, 0);
        private Socket? _socket;

        public FakeRankZero() => _listener.Start();

        public int Port => ((IPEndPoint)_listener.LocalEndpoint).Port;

        public async Task<Socket> AcceptAsync()
        {
            _socket = await _listener.AcceptSocketAsync(Ct);
            byte[] hello = new byte[TcpBroadcastFrames.HelloBytes];
            for (int read = 0; read < hello.Length;)
            {
                read += await _socket.ReceiveAsync(hello.AsMemory(read), Ct);
            }

            Assert.Equal(TcpBroadcastFrames.Magic, BinaryPrimitives.ReadInt64LittleEndian(hello));
            _socket.Send(Frame(1, 0, []));
            return _socket;
        }

        public void Dispose()
        {
            _socket?.Dispose();
            _listener.Dispose();
        }
    }
}
