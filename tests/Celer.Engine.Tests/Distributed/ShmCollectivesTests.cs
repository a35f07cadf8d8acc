using System.Diagnostics;
using Celer.Backends.Cpu;
using Celer.Engine.Distributed;
using Celer.Models.Backend;
using Celer.Models.Weights;
using static Celer.Engine.Tests.Distributed.BroadcastTestSupport;
using static Celer.Engine.Tests.Distributed.CollectiveSequence;

namespace Celer.Engine.Tests.Distributed;

/// <summary>
/// The shared-memory tensor-parallel group: ranks in threads (each with its own mapping) and in processes end every
/// collective with the bits <see cref="InProcessGroup"/> gives on the same inputs; a rank that dies, stalls or leaves
/// ends the others' waits with an error naming it; bad arguments, names and files get clear errors.
/// </summary>
[Collection(BroadcastTestSupport.Collection)]
public class ShmCollectivesTests
{
    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(60);

    [Theory]
    [InlineData(2)]
    [InlineData(3)]
    [InlineData(4)]
    public async Task ManyCollectivesInARow_EndWithInProcessGroupsBits_OnEveryRank(int size)
    {
        const int Seed = 11, Count = 300;
        Step[] steps = Steps(Seed + size, Count);
        float[][][] inputs = [.. steps.Select((step, i) => Enumerable.Range(0, size).Select(rank => Input(Seed + size, i, step, rank)).ToArray())];

        float[][][] reference;
        using (var group = new InProcessGroup(size))
        {
            reference = await RunRanks(size, group.Member, steps, inputs, Patience);
        }

        float[][][] shared;
        ShmCollectives[] members = Group(size, Patience);
        try
        {
            shared = await RunRanks(size, rank => members[rank], steps, inputs, Patience);
        }
        finally
        {
            Array.ForEach(members, member => member.Dispose());
        }

        for (int i = 0; i < Count; i++)
        {
            for (int rank = 0; rank < size; rank++)
            {
                Assert.Equal(Bits(reference[i][rank]), Bits(shared[i][rank]));
                // InProcessGroup is itself checked against the element-by-element definition.
                Assert.Equal(Bits(Expected(steps[i], inputs[i], rank)), Bits(reference[i][rank]));
            }
        }

        if (size >= 3)
        {
            // The inputs are such that another order of the terms gives other bits, so a group summing out of rank order fails above.
            int reordered = steps.Select((step, i) => step.Gather ? 0 : Enumerable.Range(0, step.Rows * step.Columns).Count(e =>
                SumInOrder(inputs[i], e, Enumerable.Range(0, size).Reverse()) != SumInOrder(inputs[i], e, Enumerable.Range(0, size)))).Sum();
            Assert.True(reordered > 100, $"only {reordered} sums depend on the order of their terms");
        }
    }

    [Fact]
    public async Task RanksInOtherProcesses_EndWithTheSumsInRankOrder_BitForBit()
    {
        const int Seed = 5, Count = 200, Size = 3;
        Step[] steps = Steps(Seed, Count);
        Process?[] children = new Process?[Size];
        using var group = ShmCollectives.Create(Size, SlotBytes, Patience);
        try
        {
            children[1] = CollectivesPeerProcess.Start(group.Name, 1, Seed, Count);
            children[2] = CollectivesPeerProcess.Start(group.Name, 2, Seed, Count);
            float[][] results = await OnOwnThread(() => steps.Select((step, i) => Run(group, step, Input(Seed, i, step, 0))).ToArray()).WaitAsync(Patience, Ct);

            // What each rank should hold, from every rank's inputs: rank 0 checks its own bits, the others report a checksum.
            float[][][] expected = [.. Enumerable.Range(0, Size).Select(rank => steps.Select((step, i) =>
                Expected(step, [.. Enumerable.Range(0, Size).Select(r => Input(Seed, i, step, r))], rank)).ToArray())];
            for (int i = 0; i < Count; i++)
            {
                Assert.Equal(Bits(expected[0][i]), Bits(results[i]));
            }

            for (int rank = 1; rank < Size; rank++)
            {
                Process child = children[rank]!;
                Assert.Equal("joined", await BroadcastPeerProcess.ReadLineAsync(child));
                Assert.Equal(Checksum(expected[rank]), await BroadcastPeerProcess.ReadLineAsync(child));
                await child.WaitForExitAsync(Ct);
                Assert.Equal(0, child.ExitCode);
            }
        }
        finally
        {
            Array.ForEach(children, CollectivesPeerProcess.Stop);
        }
    }

    [Fact]
    public async Task KillingARankProcessMidSequence_EndsTheOthersWaitWithinSeconds_NamingIt()
    {
        const int Seed = 6, Count = 20;
        Step[] steps = Steps(Seed, Count);
        Process? child = null;
        using var group = ShmCollectives.Create(2, SlotBytes, Patience);
        try
        {
            child = CollectivesPeerProcess.Start(group.Name, 1, Seed, Count, stallBefore: 5);
            Task running = OnOwnThread(() =>
            {
                for (int i = 0; i < Count; i++)
                {
                    Run(group, steps[i], Input(Seed, i, steps[i], 0));
                }
            });
            Assert.Equal("joined", await BroadcastPeerProcess.ReadLineAsync(child));
            Assert.Equal("stalled", await BroadcastPeerProcess.ReadLineAsync(child));
            await Task.Delay(100, Ct);
            Assert.False(running.IsCompleted, "rank 0 went on without rank 1");

            var clock = Stopwatch.StartNew();
            child.Kill();
            // No liveness delegate: rank 0 looks up the process id rank 1 recorded when it joined.
            var died = await Assert.ThrowsAsync<CollectivePeerDiedException>(() => running.WaitAsync(Patience, Ct));
            Assert.InRange(clock.Elapsed, TimeSpan.Zero, TimeSpan.FromSeconds(5));
            Assert.Equal(1, died.Rank);
            Assert.Contains("rank 1 died before collective 6", died.Message, StringComparison.Ordinal);
            Assert.Contains("is broken", Assert.Throws<InvalidOperationException>(() => Run(group, steps[5], Input(Seed, 5, steps[5], 0))).Message, StringComparison.Ordinal);
        }
        finally
        {
            CollectivesPeerProcess.Stop(child);
        }
    }

    [Fact]
    public async Task ARankReportedDead_EndsTheWait_NamingIt()
    {
        bool rankOneAlive = true;
        using var rank0 = ShmCollectives.Create(2, SlotBytes, Patience, rank => rank != 1 || Volatile.Read(ref rankOneAlive));
        using var rank1 = ShmCollectives.Join(rank0.Name, 1, Patience);
        var step = new Step(Gather: false, Rows: 2, Capacity: 2, Columns: 3);
        Task waiting = OnOwnThread(() => Run(rank0, step, Input(1, 0, step, 0)));
        await Task.Delay(50, Ct);
        Assert.False(waiting.IsCompleted, "rank 0 went on without rank 1");

        var clock = Stopwatch.StartNew();
        Volatile.Write(ref rankOneAlive, false);
        var died = await Assert.ThrowsAsync<CollectivePeerDiedException>(() => waiting.WaitAsync(Patience, Ct));
        Assert.InRange(clock.Elapsed, TimeSpan.Zero, TimeSpan.FromSeconds(5));
        Assert.Equal(1, died.Rank);

        // Rank 0 had arrived before it gave up, so rank 1 still completes that collective with rank 0's data; rank 0 left
        // the group when its wait failed, so rank 1 does not wait for it at the next.
        float[][] inputs = [Input(1, 0, step, 0), Input(1, 0, step, 1)];
        Assert.Equal(Bits(Expected(step, inputs, 1)), Bits(Run(rank1, step, inputs[1])));
        var closed = Assert.Throws<CollectiveGroupClosedException>(() => Run(rank1, step, Input(1, 1, step, 1)));
        Assert.Equal(0, closed.Rank);
        Assert.Contains("rank 0 left the group (one of its collectives failed) while rank 1 waited for collective 2", closed.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task ARankThatNeverArrives_TimesOutNamingIt_AndTheRankThatTimedOutStopsTheOthersAtOnce()
    {
        var shortWait = TimeSpan.FromMilliseconds(300);
        using var rank0 = ShmCollectives.Create(3, SlotBytes, shortWait);
        using var rank1 = ShmCollectives.Join(rank0.Name, 1, Patience);
        using var rank2 = ShmCollectives.Join(rank0.Name, 2, Patience);
        var step = new Step(Gather: true, Rows: 1, Capacity: 1, Columns: 5);
        Task waiting1 = OnOwnThread(() => Run(rank1, step, Input(2, 0, step, 1)));

        var clock = Stopwatch.StartNew();
        var timeout = Assert.Throws<CollectiveTimeoutException>(() => Run(rank0, step, Input(2, 0, step, 0)));
        Assert.InRange(clock.Elapsed, shortWait, Patience);
        Assert.Equal([2], timeout.StuckRanks);
        Assert.Contains("rank(s) 2 did not reach collective 1 within 300 ms", timeout.Message, StringComparison.Ordinal);

        // Rank 1 has a minute's patience but stops as soon as rank 0 has left.
        var closed = await Assert.ThrowsAsync<CollectiveGroupClosedException>(() => waiting1.WaitAsync(Patience, Ct));
        Assert.InRange(clock.Elapsed, shortWait, TimeSpan.FromSeconds(5));
        Assert.Equal(0, closed.Rank);
        Assert.Contains("rank 0 left the group (one of its collectives failed) while rank 1 waited for collective 1", closed.Message, StringComparison.Ordinal);
        Assert.Contains("is broken", Assert.Throws<InvalidOperationException>(() => Run(rank0, step, Input(2, 0, step, 0))).Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task DisposingAWaitingRank_EndsItsWait_AndTheOthersStopAtOnce()
    {
        using var rank0 = ShmCollectives.Create(2, SlotBytes, Patience);
        using var rank1 = ShmCollectives.Join(rank0.Name, 1, Patience);
        string path = Path.Combine(ShmRingBuffer.Folder, rank0.Name);
        var step = new Step(Gather: false, Rows: 1, Capacity: 1, Columns: 7);
        Task waiting = OnOwnThread(() => Run(rank0, step, Input(3, 0, step, 0)));
        await Task.Delay(50, Ct);
        Assert.False(waiting.IsCompleted);
        var twice = Assert.Throws<InvalidOperationException>(() => Run(rank0, step, Input(3, 0, step, 0)));
        Assert.Contains("called from two threads at once", twice.Message, StringComparison.Ordinal);

        var clock = Stopwatch.StartNew();
        rank0.Dispose();
        await Assert.ThrowsAsync<ObjectDisposedException>(() => waiting.WaitAsync(Patience, Ct));
        Assert.False(File.Exists(path), "rank 0 leaves no file behind");

        // Rank 0 had arrived at the collective, so rank 1 completes it from rank 0's slot (mapped still, though the file
        // is gone); at the next it finds rank 0 gone for good instead of waiting out its minute.
        float[][] inputs = [Input(3, 0, step, 0), Input(3, 0, step, 1)];
        Assert.Equal(Bits(Expected(step, inputs, 1)), Bits(Run(rank1, step, inputs[1])));
        var closed = Assert.Throws<CollectiveGroupClosedException>(() => Run(rank1, step, Input(3, 1, step, 1)));
        Assert.InRange(clock.Elapsed, TimeSpan.Zero, TimeSpan.FromSeconds(5));
        Assert.Equal(0, closed.Rank);
        Assert.Contains("rank 0 left the group (it was disposed) while rank 1 waited for collective 2", closed.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task RanksThatRunDifferentCollectives_FailAtTheFirstOne_SayingWhatEachRan()
    {
        using var rank0 = ShmCollectives.Create(2, SlotBytes, Patience);
        using var rank1 = ShmCollectives.Join(rank0.Name, 1, Patience);
        var reduce = new Step(Gather: false, Rows: 2, Capacity: 2, Columns: 3);
        var gather = reduce with { Gather = true };
        Task first = OnOwnThread(() => Run(rank0, reduce, Input(4, 0, reduce, 0)));
        Task second = OnOwnThread(() => Run(rank1, gather, Input(4, 0, gather, 1)));
        var error = await Assert.ThrowsAsync<InvalidOperationException>(() => first.WaitAsync(Patience, Ct));
        Assert.Contains("collective 1 is an all-reduce of 2 × 3 on rank 0 but an all-gather of 2 × 3 on rank 1; the ranks ran different steps", error.Message, StringComparison.Ordinal);
        await Assert.ThrowsAsync<InvalidOperationException>(() => second.WaitAsync(Patience, Ct));
    }

    [Fact]
    public async Task BadArguments_AreRejectedBeforeAnythingIsShared_AndTheGroupGoesOn()
    {
        using var rank0 = ShmCollectives.Create(2, slotBytes: 64, Patience);
        using var rank1 = ShmCollectives.Join(rank0.Name, 1, Patience);
        Assert.Equal(64, rank0.SlotBytes);
        float[] values = Pinned(new float[40]);

        // 5 rows of 4 floats are 80 bytes; a slot holds 64.
        var oversize = Assert.Throws<ArgumentException>(() => rank0.AllReduce(Over(values, 5, 4), 5));
        Assert.Contains("An all-reduce of 5 rows × 4 columns is 80 bytes per rank, more than the 64-byte slot", oversize.Message, StringComparison.Ordinal);
        Assert.Contains("is 80 bytes per rank", Assert.Throws<ArgumentException>(() => rank0.AllGatherColumns(Over(values, 5, 4), 5, Over(Pinned(new float[80]), 5, 8))).Message, StringComparison.Ordinal);
        Assert.Throws<ArgumentOutOfRangeException>(() => rank0.AllReduce(Over(values, 2, 4), 3));
        Assert.Throws<ArgumentOutOfRangeException>(() => rank0.AllReduce(Over(values, 2, 4), -1));

        var halves = Assert.Throws<NotSupportedException>(() => rank0.AllReduce(Over(values, 2, 4, DType.F16), 2));
        Assert.Equal("The shared-memory group's all-reduce takes fp32 tensors (the CPU backend's activations), not F16.", halves.Message);

        // The same words as the in-process group for an output of the wrong width.
        var narrow = Assert.Throws<ArgumentException>(() => rank0.AllGatherColumns(Over(values, 2, 4), 2, Over(values, 2, 7)));
        using (var inProcess = new InProcessGroup(2))
        {
            Assert.Equal(Assert.Throws<ArgumentException>(() => inProcess.Member(0).AllGatherColumns(Over(values, 2, 4), 2, Over(values, 2, 7))).Message, narrow.Message);
        }

        Assert.Equal("output", narrow.ParamName);

        // Nothing was published: the next collective (exactly a slot's worth) is the group's first.
        var full = new Step(Gather: false, Rows: 4, Capacity: 4, Columns: 4);
        float[][] inputs = [Input(7, 0, full, 0), Input(7, 0, full, 1)];
        Task<float[]> other = OnOwnThread(() => Run(rank1, full, inputs[1]));
        Assert.Equal(Bits(Expected(full, inputs, 0)), Bits(Run(rank0, full, inputs[0])));
        Assert.Equal(Bits(Expected(full, inputs, 1)), Bits(await other.WaitAsync(Patience, Ct)));
    }

    [Fact]
    public void Create_RejectsImpossibleShapes_AndFailsClearlyWhenTheMemoryCannotBeReserved()
    {
        Assert.Throws<ArgumentOutOfRangeException>(() => ShmCollectives.Create(0, 64, Patience));
        Assert.Throws<ArgumentOutOfRangeException>(() => ShmCollectives.Create(1025, 64, Patience));
        Assert.Throws<ArgumentOutOfRangeException>(() => ShmCollectives.Create(2, 0, Patience));
        Assert.Throws<ArgumentOutOfRangeException>(() => ShmCollectives.Create(2, ShmCollectivesLayout.MaxSlotBytes + 1, Patience));
        Assert.Throws<ArgumentOutOfRangeException>(() => ShmCollectives.Create(2, 64, TimeSpan.FromMilliseconds(-2)));

        // 1024 ranks × 2 slots of 8 GiB: more than any /dev/shm (or disk) holds, refused up front rather than faulting later.
        string[] before = OwnFiles();
        var error = Assert.Throws<IOException>(() => ShmCollectives.Create(1024, ShmCollectivesLayout.MaxSlotBytes, Patience));
        Assert.StartsWith("Could not reserve", error.Message, StringComparison.Ordinal);
        Assert.Contains("for a collective group", error.Message, StringComparison.Ordinal);
        Assert.Equal(before, OwnFiles());
    }

    [Theory]
    [InlineData("")]
    [InlineData("group")]
    [InlineData("celer-collectives-../../etc/passwd")]
    [InlineData("celer-collectives-1/x")]
    [InlineData("celer-collectives-12-0123ABCD0123ABCD0123ABCD0123ABCD")]
    [InlineData("celer-collectives-12-0123abcd")]
    [InlineData("celer-collectives--0123abcd0123abcd0123abcd0123abcd")]
    [InlineData("celer-broadcast-12-0123abcd0123abcd0123abcd0123abcd")]
    public void Join_RejectsNamesCreateNeverMakes(string name)
    {
        var error = Assert.Throws<ArgumentException>(() => ShmCollectives.Join(name, 1, Patience));
        Assert.Equal("name", error.ParamName);
    }

    [Fact]
    public void Join_SaysWhenTheGroupIsMissing_TheRankIsWrongOrTaken_OrTheFileIsNotAGroup()
    {
        string missingName = $"celer-collectives-1-{Guid.NewGuid():N}";
        var missing = Assert.Throws<FileNotFoundException>(() => ShmCollectives.Join(missingName, 1, Patience));
        Assert.Contains($"no collective group '{missingName}'", missing.Message, StringComparison.Ordinal);

        using (var group = ShmCollectives.Create(2, 64, Patience))
        {
            Assert.Contains("Rank 0 creates the group", Assert.Throws<ArgumentOutOfRangeException>(() => ShmCollectives.Join(group.Name, 0, Patience)).Message, StringComparison.Ordinal);
            Assert.Contains("has 2 rank(s), 0 to 1", Assert.Throws<ArgumentOutOfRangeException>(() => ShmCollectives.Join(group.Name, 2, Patience)).Message, StringComparison.Ordinal);
            using var rank1 = ShmCollectives.Join(group.Name, 1, Patience);
            var taken = Assert.Throws<InvalidOperationException>(() => ShmCollectives.Join(group.Name, 1, Patience));
            Assert.Contains($"Rank 1 of collective group '{group.Name}' was already joined (by process {Environment.ProcessId})", taken.Message, StringComparison.Ordinal);
        }

        // A file with a group's name but not a group's contents (process 1 is alive, so no creator sweeps it meanwhile).
        string name = $"celer-collectives-1-{Guid.NewGuid():N}";
        string path = Path.Combine(ShmRingBuffer.Folder, name);
        try
        {
            File.WriteAllBytes(path, [.. Enumerable.Range(0, 4096).Select(i => (byte)(i * 37))]);
            Assert.Contains("is not a Celer collective group", Assert.Throws<InvalidDataException>(() => ShmCollectives.Join(name, 1, Patience)).Message, StringComparison.Ordinal);
            File.WriteAllBytes(path, [1, 2, 3]);
            Assert.Contains("the file is only 3 bytes", Assert.Throws<InvalidDataException>(() => ShmCollectives.Join(name, 1, Patience)).Message, StringComparison.Ordinal);
        }
        finally
        {
            File.Delete(path);
        }
    }

    [Fact]
    public void OnlyRankZerosDispose_DeletesTheFile_AndCreateSweepsTheFilesOfDeadCreators()
    {
        int dead;
        using (var exited = Process.Start(new ProcessStartInfo("dotnet", "--version") { RedirectStandardOutput = true })!)
        {
            exited.WaitForExit();
            dead = exited.Id;
        }

        string Stale(TimeSpan age)
        {
            string stale = Path.Combine(ShmRingBuffer.Folder, $"celer-collectives-{dead}-{Guid.NewGuid():N}");
            File.WriteAllBytes(stale, [0]);
            File.SetLastWriteTimeUtc(stale, DateTime.UtcNow - age);
            return stale;
        }

        string deadAndOld = Stale(TimeSpan.FromMinutes(5)), deadButFresh = Stale(TimeSpan.Zero);
        try
        {
            using var rank0 = ShmCollectives.Create(2, 64, Patience);
            Assert.False(File.Exists(deadAndOld));
            Assert.True(File.Exists(deadButFresh));

            string path = Path.Combine(ShmRingBuffer.Folder, rank0.Name);
            if (!OperatingSystem.IsWindows())
            {
                Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(path));
            }

            ShmCollectives.Join(rank0.Name, 1, Patience).Dispose();
            Assert.True(File.Exists(path));
            rank0.Dispose();
            Assert.False(File.Exists(path));
        }
        finally
        {
            Array.ForEach([deadAndOld, deadButFresh], File.Delete);
        }
    }

    /// <summary>A group of <paramref name="size"/> ranks in this process, each with its own mapping of the file.</summary>
    private static ShmCollectives[] Group(int size, TimeSpan timeout)
    {
        var members = new ShmCollectives[size];
        members[0] = ShmCollectives.Create(size, SlotBytes, timeout);
        for (int rank = 1; rank < size; rank++)
        {
            members[rank] = ShmCollectives.Join(members[0].Name, rank, timeout);
        }

        return members;
    }

    private static string[] OwnFiles() =>
        [.. Directory.EnumerateFiles(ShmRingBuffer.Folder, $"celer-collectives-{Environment.ProcessId}-*").Order(StringComparer.Ordinal)];
}
