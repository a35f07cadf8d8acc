using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Sockets;
using System.Runtime.CompilerServices;
using System.Text;
using Celer.Backends.Cpu;
using Celer.Engine.Distributed;
using Celer.Models.Backend;
using Celer.Models.Weights;
using static Celer.Engine.Tests.Distributed.BroadcastTestSupport;
using static Celer.Engine.Tests.Distributed.CollectiveSequence;

namespace Celer.Engine.Tests.Distributed;

/// <summary>
/// The TCP tensor-parallel group on 127.0.0.1: ranks in threads (and one in a process of its own) end every collective
/// with the bits <see cref="InProcessGroup"/> gives on the same inputs; a rank that dies, stalls, leaves or runs another
/// step ends the others' waits with an error naming it; stray and duplicate connections are turned away without
/// disturbing the group; bad arguments get the shared-memory group's errors.
/// </summary>
[Collection(BroadcastTestSupport.Collection)]
public class TcpCollectivesTests
{
    private const string Host = "127.0.0.1";
    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(60);
    private static readonly IPEndPoint AnyLoopbackPort = new(IPAddress.Loopback, 0);

    [Theory]
    [InlineData(2)]
    [InlineData(3)]
    [InlineData(4)]
    public async Task ManyCollectivesInARow_EndWithInProcessGroupsBits_OnEveryRank(int size)
    {
        const int Seed = 17, Count = 300;
        Step[] steps = Steps(Seed + size, Count);
        float[][][] inputs = [.. steps.Select((step, i) => Enumerable.Range(0, size).Select(rank => Input(Seed + size, i, step, rank)).ToArray())];

        float[][][] reference;
        using (var group = new InProcessGroup(size))
        {
            reference = await RunRanks(size, group.Member, steps, inputs, Patience);
        }

        var members = new TcpCollectives[size];
        members[0] = TcpCollectives.Create(AnyLoopbackPort, size, Patience);
        float[][][] overTcp;
        try
        {
            // Each rank joins on its own thread, as a worker does, while rank 0 is already at its first collective.
            overTcp = await RunRanks(size, rank => rank == 0 ? members[0] : members[rank] = TcpCollectives.Join(Host, members[0].LocalEndPoint.Port, rank, size, Patience), steps, inputs, Patience);
        }
        finally
        {
            Array.ForEach(members, member => member?.Dispose());
        }

        for (int i = 0; i < Count; i++)
        {
            for (int rank = 0; rank < size; rank++)
            {
                Assert.Equal(Bits(reference[i][rank]), Bits(overTcp[i][rank]));
                Assert.Equal(Bits(Expected(steps[i], inputs[i], rank)), Bits(reference[i][rank]));
            }
        }

        if (size >= 3)
        {
            // Another order of the terms gives other bits for many of these sums, so a group summing out of rank order fails above.
            int reordered = steps.Select((step, i) => step.Gather ? 0 : Enumerable.Range(0, step.Rows * step.Columns).Count(e =>
                SumInOrder(inputs[i], e, Enumerable.Range(0, size).Reverse()) != SumInOrder(inputs[i], e, Enumerable.Range(0, size)))).Sum();
            Assert.True(reordered > 100, $"only {reordered} sums depend on the order of their terms");
        }
    }

    [Fact]
    public async Task KillingARankProcessMidSequence_EndsTheOthersWaitsWithinSeconds_NamingIt()
    {
        const int Seed = 8, Count = 20, Size = 3, StallBefore = 5;
        Step[] steps = Steps(Seed, Count);
        using var rank0 = TcpCollectives.Create(AnyLoopbackPort, Size, Patience);
        Process child = PeerProcess.Start(rank0.LocalEndPoint.Port, 2, Size, Seed, Count, StallBefore);
        try
        {
            using var rank1 = TcpCollectives.Join(Host, rank0.LocalEndPoint.Port, 1, Size, Patience);
            var results = new float[Size][][];
            Task[] running = [.. new ICollectives[] { rank0, rank1 }.Select((member, rank) => OnOwnThread(() =>
            {
                results[rank] = new float[Count][];
                for (int i = 0; i < Count; i++)
                {
                    results[rank][i] = Run(member, steps[i], Input(Seed, i, steps[i], rank));
                }
            }))];
            Assert.Equal("joined", await BroadcastPeerProcess.ReadLineAsync(child));
            Assert.Equal("stalled", await BroadcastPeerProcess.ReadLineAsync(child));
            await Task.Delay(100, Ct);
            Assert.DoesNotContain(running, task => task.IsCompleted);

            var clock = Stopwatch.StartNew();
            child.Kill();
            var died0 = await Assert.ThrowsAsync<CollectivePeerDiedException>(() => running[0].WaitAsync(Patience, Ct));
            var died1 = await Assert.ThrowsAsync<CollectivePeerDiedException>(() => running[1].WaitAsync(Patience, Ct));
            Assert.InRange(clock.Elapsed, TimeSpan.Zero, TimeSpan.FromSeconds(5));
            Assert.Equal(2, died0.Rank);
            Assert.Contains("rank 2's connection", died0.Message, StringComparison.Ordinal);
            Assert.Contains($"during collective {StallBefore + 1}: the rank died or its host went away", died0.Message, StringComparison.Ordinal);
            // Rank 1 waited for rank 0, which told it which rank died before closing the group.
            Assert.Equal(2, died1.Rank);
            Assert.Contains($"Rank 0 closed the group on it, so rank 1 stopped waiting for collective {StallBefore + 1}", died1.Message, StringComparison.Ordinal);

            float[][][] inputs = [.. steps.Select((step, i) => Enumerable.Range(0, Size).Select(rank => Input(Seed, i, step, rank)).ToArray())];
            for (int i = 0; i < StallBefore; i++)
            {
                Assert.Equal(Bits(Expected(steps[i], inputs[i], 0)), Bits(results[0][i]));
                Assert.Equal(Bits(Expected(steps[i], inputs[i], 1)), Bits(results[1][i]));
            }

            Assert.Contains("is broken", Assert.Throws<InvalidOperationException>(() => Run(rank0, steps[0], inputs[0][0])).Message, StringComparison.Ordinal);
            Assert.Contains("is broken", Assert.Throws<InvalidOperationException>(() => Run(rank1, steps[0], inputs[0][1])).Message, StringComparison.Ordinal);
        }
        finally
        {
            CollectivesPeerProcess.Stop(child);
        }
    }

    [Fact]
    public async Task ARankThatSendsNothing_TimesOutNamingIt_AndTheOthersStopAtOnce()
    {
        var shortWait = TimeSpan.FromMilliseconds(300);
        using var rank0 = TcpCollectives.Create(AnyLoopbackPort, 3, shortWait);
        using var rank1 = TcpCollectives.Join(Host, rank0.LocalEndPoint.Port, 1, 3, Patience);
        using var rank2 = TcpCollectives.Join(Host, rank0.LocalEndPoint.Port, 2, 3, Patience);
        var step = new Step(Gather: true, Rows: 3, Capacity: 4, Columns: 5);
        Task waiting1 = OnOwnThread(() => Run(rank1, step, Input(2, 0, step, 1)));

        var clock = Stopwatch.StartNew();
        var timeout = Assert.Throws<CollectiveTimeoutException>(() => Run(rank0, step, Input(2, 0, step, 0)));
        Assert.InRange(clock.Elapsed, shortWait, Patience);
        Assert.Equal([2], timeout.StuckRanks);
        Assert.Contains("rank(s) 2 moved no data of collective 1 within 300 ms; rank 0 waited for them", timeout.Message, StringComparison.Ordinal);

        // Rank 1 has a minute's patience but stops as soon as rank 0 gave up; rank 2, late, finds the group closed.
        var closed = await Assert.ThrowsAsync<CollectiveGroupClosedException>(() => waiting1.WaitAsync(Patience, Ct));
        Assert.InRange(clock.Elapsed, shortWait, TimeSpan.FromSeconds(5));
        Assert.Equal(0, closed.Rank);
        Assert.Contains("rank 0 left the group (one of its collectives failed: ", closed.Message, StringComparison.Ordinal);
        Assert.Contains("while rank 1 waited for collective 1", closed.Message, StringComparison.Ordinal);
        var late = await Assert.ThrowsAsync<CollectiveGroupClosedException>(() => OnOwnThread(() => Run(rank2, step, Input(2, 0, step, 2))).WaitAsync(TimeSpan.FromSeconds(5), Ct));
        Assert.Equal(0, late.Rank);
        Assert.Contains("is broken", Assert.Throws<InvalidOperationException>(() => Run(rank0, step, Input(2, 0, step, 0))).Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task StrayConnections_AreAnsweredAndClosed_AndTheGroupGoesOn()
    {
        const int Seed = 21, Count = 40;
        using var rank0 = TcpCollectives.Create(AnyLoopbackPort, 2, Patience);
        int port = rank0.LocalEndPoint.Port;

        // A client speaking another protocol gets the reason and a closed connection.
        using var http = new TcpClient();
        await http.ConnectAsync(IPAddress.Loopback, port, Ct);
        await http.GetStream().WriteAsync("GET / HTTP/1.1\r\nHost: celer\r\n\r\n"u8.ToArray(), Ct);
        using var answer = new MemoryStream();
        await http.GetStream().CopyToAsync(answer, Ct).WaitAsync(Patience, Ct);
        Assert.Contains("not a Celer collective-group connection", Encoding.UTF8.GetString(answer.ToArray()), StringComparison.Ordinal);

        // One that connects and says nothing, one that sends a few bytes and leaves: neither holds up the rank that joins.
        using var silent = new TcpClient();
        await silent.ConnectAsync(IPAddress.Loopback, port, Ct);
        using (var hasty = new TcpClient())
        {
            await hasty.ConnectAsync(IPAddress.Loopback, port, Ct);
            await hasty.GetStream().WriteAsync(new byte[] { 0x63, 0x65, 0x6c }, Ct);
        }

        using var rank1 = TcpCollectives.Join(Host, port, 1, 2, Patience);
        Step[] steps = Steps(Seed, Count);
        float[][][] inputs = [.. steps.Select((step, i) => new[] { Input(Seed, i, step, 0), Input(Seed, i, step, 1) })];
        float[][][] results = await RunRanks(2, rank => rank == 0 ? rank0 : rank1, steps, inputs, Patience);
        for (int i = 0; i < Count; i++)
        {
            Assert.Equal(Bits(Expected(steps[i], inputs[i], 0)), Bits(results[i][0]));
            Assert.Equal(Bits(Expected(steps[i], inputs[i], 1)), Bits(results[i][1]));
        }
    }

    [Fact]
    public async Task DuplicateAndForeignRanks_AreRefusedWithTheReason_AndAGroupThatDoesNotFillUpQuotesThem()
    {
        using var rank0 = TcpCollectives.Create(AnyLoopbackPort, 3, Patience);
        int port = rank0.LocalEndPoint.Port;
        using var rank1 = TcpCollectives.Join(Host, port, 1, 3, Patience);
        var duplicate = Assert.Throws<InvalidOperationException>(() => TcpCollectives.Join(Host, port, 1, 3, Patience));
        Assert.Contains($"Rank 0 of the collective group at {Host}:{port} refused rank 1: rank 1 already joined (from ", duplicate.Message, StringComparison.Ordinal);
        var otherSize = Assert.Throws<InvalidOperationException>(() => TcpCollectives.Join(Host, port, 2, 4, Patience));
        Assert.Contains("refused rank 2: it expects a group of 4 ranks, this group has 3", otherSize.Message, StringComparison.Ordinal);

        var missing = Assert.Throws<CollectiveTimeoutException>(() => rank0.WaitForRanks(TimeSpan.FromMilliseconds(300)));
        Assert.Equal([2], missing.StuckRanks);
        Assert.Contains("rank(s) 2 did not join within 300 ms; turned away meanwhile: ", missing.Message, StringComparison.Ordinal);
        Assert.Contains("rank 1 already joined", missing.Message, StringComparison.Ordinal);
        Assert.Contains("it expects a group of 4 ranks", missing.Message, StringComparison.Ordinal);

        // Waiting for the ranks failed, but no collective did: the group fills up and works.
        using var rank2 = TcpCollectives.Join(Host, port, 2, 3, Patience);
        rank0.WaitForRanks(Patience);
        var step = new Step(Gather: false, Rows: 3, Capacity: 3, Columns: 9);
        float[][] inputs = [Input(9, 0, step, 0), Input(9, 0, step, 1), Input(9, 0, step, 2)];
        float[][][] results = await RunRanks(3, rank => rank switch { 0 => rank0, 1 => rank1, _ => rank2 }, [step], [inputs], Patience);
        for (int rank = 0; rank < 3; rank++)
        {
            Assert.Equal(Bits(Expected(step, inputs, rank)), Bits(results[0][rank]));
        }
    }

    [Fact]
    public async Task RanksThatRunDifferentCollectives_FailAtTheFirstOne_SayingWhatEachRan()
    {
        using var rank0 = TcpCollectives.Create(AnyLoopbackPort, 2, Patience);
        using var rank1 = TcpCollectives.Join(Host, rank0.LocalEndPoint.Port, 1, 2, Patience);
        var reduce = new Step(Gather: false, Rows: 2, Capacity: 2, Columns: 3);
        var gather = reduce with { Gather = true };
        Task first = OnOwnThread(() => Run(rank0, reduce, Input(4, 0, reduce, 0)));
        Task second = OnOwnThread(() => Run(rank1, gather, Input(4, 0, gather, 1)));
        const string Mismatch = "collective 1 is an all-reduce of 2 × 3 on rank 0 but an all-gather of 2 × 3 on rank 1; the ranks ran different steps";
        var error = await Assert.ThrowsAsync<InvalidOperationException>(() => first.WaitAsync(Patience, Ct));
        Assert.Contains(Mismatch, error.Message, StringComparison.Ordinal);
        var closed = await Assert.ThrowsAsync<CollectiveGroupClosedException>(() => second.WaitAsync(Patience, Ct));
        Assert.Equal(0, closed.Rank);
        Assert.Contains(Mismatch, closed.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task DisposingAWaitingRank_EndsItsWait_AndTheOthersStopAtOnce()
    {
        using var rank0 = TcpCollectives.Create(AnyLoopbackPort, 2, Patience);
        using var rank1 = TcpCollectives.Join(Host, rank0.LocalEndPoint.Port, 1, 2, Patience);
        var step = new Step(Gather: false, Rows: 1, Capacity: 1, Columns: 7);
        Task waiting = OnOwnThread(() => Run(rank0, step, Input(3, 0, step, 0)));
        await Task.Delay(50, Ct);
        Assert.False(waiting.IsCompleted);
        var twice = Assert.Throws<InvalidOperationException>(() => Run(rank0, step, Input(3, 0, step, 0)));
        Assert.Contains("called from two threads at once", twice.Message, StringComparison.Ordinal);

        var clock = Stopwatch.StartNew();
        rank0.Dispose();
        await Assert.ThrowsAsync<ObjectDisposedException>(() => waiting.WaitAsync(Patience, Ct));
        var closed = Assert.Throws<CollectiveGroupClosedException>(() => Run(rank1, step, Input(3, 0, step, 1)));
        Assert.InRange(clock.Elapsed, TimeSpan.Zero, TimeSpan.FromSeconds(5));
        Assert.Equal(0, closed.Rank);
        Assert.Contains("rank 0 left the group (it was disposed) while rank 1 waited for collective 1", closed.Message, StringComparison.Ordinal);
        Assert.Throws<ObjectDisposedException>(() => Run(rank0, step, Input(3, 0, step, 0)));
    }

    [Fact]
    public async Task BadArguments_AreRejectedBeforeAnythingIsSent_AndTheGroupGoesOn()
    {
        using var rank0 = TcpCollectives.Create(AnyLoopbackPort, 2, Patience);
        using var rank1 = TcpCollectives.Join(Host, rank0.LocalEndPoint.Port, 1, 2, Patience);
        float[] values = Pinned(new float[40]);

        // A shape no frame carries, checked from the shape alone (the tensor's memory is 40 floats and is never read).
        var oversize = Assert.Throws<ArgumentException>(() => rank0.AllReduce(Over(values, 70_000, 40_000), 70_000));
        Assert.Contains("An all-reduce of 70000 rows × 40000 columns is 11200000000 bytes per rank, more than the 8589934588 bytes", oversize.Message, StringComparison.Ordinal);
        Assert.Equal("x", oversize.ParamName);
        Assert.Throws<ArgumentOutOfRangeException>(() => rank0.AllReduce(Over(values, 2, 4), 3));
        Assert.Throws<ArgumentOutOfRangeException>(() => rank0.AllReduce(Over(values, 2, 4), -1));
        Assert.Throws<ArgumentOutOfRangeException>(() => rank0.AllGatherColumns(Over(values, 4, 4), 3, Over(values, 2, 8)));

        var halves = Assert.Throws<NotSupportedException>(() => rank0.AllReduce(Over(values, 2, 4, DType.F16), 2));
        Assert.Equal("The TCP group's all-reduce takes fp32 tensors (the CPU backend's activations), not F16.", halves.Message);

        // The same words as the in-process group for an output of the wrong width.
        var narrow = Assert.Throws<ArgumentException>(() => rank0.AllGatherColumns(Over(values, 2, 4), 2, Over(values, 2, 7)));
        using (var inProcess = new InProcessGroup(2))
        {
            Assert.Equal(Assert.Throws<ArgumentException>(() => inProcess.Member(0).AllGatherColumns(Over(values, 2, 4), 2, Over(values, 2, 7))).Message, narrow.Message);
        }

        Assert.Equal("output", narrow.ParamName);

        // Nothing was sent: rank 1's first collective meets rank 0's first (a mismatch would name two different steps).
        var full = new Step(Gather: true, Rows: 4, Capacity: 5, Columns: 4);
        float[][] inputs = [Input(7, 0, full, 0), Input(7, 0, full, 1)];
        Task<float[]> other = OnOwnThread(() => Run(rank1, full, inputs[1]));
        Assert.Equal(Bits(Expected(full, inputs, 0)), Bits(Run(rank0, full, inputs[0])));
        Assert.Equal(Bits(Expected(full, inputs, 1)), Bits(await other.WaitAsync(Patience, Ct)));
    }

    [Fact]
    public async Task Join_KeepsTryingUntilRankZeroListens_AndGivesUpAtItsTimeout()
    {
        int port;
        using (var probe = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp))
        {
            probe.Bind(AnyLoopbackPort);
            port = ((IPEndPoint)probe.LocalEndPoint!).Port;
        }

        var clock = Stopwatch.StartNew();
        var unreachable = Assert.Throws<CollectiveTimeoutException>(() => TcpCollectives.Join(Host, port, 1, 2, TimeSpan.FromMilliseconds(300)));
        Assert.InRange(clock.Elapsed, TimeSpan.FromMilliseconds(300), TimeSpan.FromSeconds(10));
        Assert.Equal([0], unreachable.StuckRanks);
        Assert.Contains($"Collective group at {Host}:{port}: rank 0 could not be reached within 300 ms", unreachable.Message, StringComparison.Ordinal);

        Task<TcpCollectives> joining = OnOwnThread(() => TcpCollectives.Join(Host, port, 1, 2, Patience));
        await Task.Delay(300, Ct);
        Assert.False(joining.IsCompleted, "joined a group nobody listens for");
        using var rank0 = TcpCollectives.Create(new IPEndPoint(IPAddress.Loopback, port), 2, Patience);
        using TcpCollectives rank1 = await joining.WaitAsync(Patience, Ct);
        Assert.Equal(port, rank0.LocalEndPoint.Port);
        Assert.Equal((1, 2), (rank1.Rank, rank1.Size));
        rank0.WaitForRanks(Patience);
    }

    [Fact]
    public void CreateAndJoin_RejectImpossibleArguments()
    {
        Assert.Throws<ArgumentOutOfRangeException>(() => TcpCollectives.Create(AnyLoopbackPort, 0, Patience));
        Assert.Throws<ArgumentOutOfRangeException>(() => TcpCollectives.Create(AnyLoopbackPort, TcpCollectives.MaxRanks + 1, Patience));
        Assert.Throws<ArgumentOutOfRangeException>(() => TcpCollectives.Create(AnyLoopbackPort, 2, TimeSpan.FromMilliseconds(-2)));
        Assert.Contains("Rank 0 creates the group", Assert.Throws<ArgumentOutOfRangeException>(() => TcpCollectives.Join(Host, 5000, 0, 2, Patience)).Message, StringComparison.Ordinal);
        Assert.Throws<ArgumentOutOfRangeException>(() => TcpCollectives.Join(Host, 5000, 2, 2, Patience));
        Assert.Throws<ArgumentOutOfRangeException>(() => TcpCollectives.Join(Host, 0, 1, 2, Patience));
        Assert.Throws<ArgumentOutOfRangeException>(() => TcpCollectives.Join(Host, 5000, 1, 1, Patience));
        Assert.Throws<ArgumentException>(() => TcpCollectives.Join(" ", 5000, 1, 2, Patience));

        using var taken = TcpCollectives.Create(AnyLoopbackPort, 2, Patience);
        var inUse = Assert.Throws<IOException>(() => TcpCollectives.Create(taken.LocalEndPoint, 2, Patience));
        Assert.Contains($"could not listen on {taken.LocalEndPoint}", inUse.Message, StringComparison.Ordinal);
    }

    /// <summary>
    /// A rank in a process of its own: this test executable started again with <see cref="RoleVariable"/> set joins the
    /// group at 127.0.0.1:port, prints "joined", runs a <see cref="CollectiveSequence"/> and prints "stalled" before step
    /// stallBefore, then hangs until killed (a module initializer runs before the test runner, as in
    /// <see cref="CollectivesPeerProcess"/>).
    /// </summary>
    internal static class PeerProcess
    {
        private const string RoleVariable = "CELER_TEST_TCP_COLLECTIVES_PEER";

        public static Process Start(int port, int rank, int size, int seed, int steps, int stallBefore) =>
            TestPeerProcess.Start(RoleVariable, port, rank, size, seed, steps, stallBefore);

        [ModuleInitializer]
        internal static void RunWhenAsked() => TestPeerProcess.RunIfAsked(RoleVariable, role =>
        {
            int[] words = [.. role.Select(word => int.Parse(word, CultureInfo.InvariantCulture))];
            Run(port: words[0], rank: words[1], size: words[2], seed: words[3], steps: words[4], stallBefore: words[5]);
        });

        private static void Run(int port, int rank, int size, int seed, int steps, int stallBefore)
        {
            using var group = TcpCollectives.Join(Host, port, rank, size, TimeSpan.FromMinutes(1));
            Console.WriteLine("joined");
            Step[] sequence = Steps(seed, steps);
            for (int i = 0; i < steps; i++)
            {
                if (i == stallBefore)
                {
                    Console.WriteLine("stalled");
                    Thread.Sleep(Timeout.Infinite);
                }

                CollectiveSequence.Run(group, sequence[i], Input(seed, i, sequence[i], rank));
            }
        }
    }
}
