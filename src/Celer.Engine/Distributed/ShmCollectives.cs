using System.Buffers;
using Celer.Models.Backend;
using Celer.Models.Weights;
using TensorPrimitives = System.Numerics.Tensors.TensorPrimitives;

namespace Celer.Engine.Distributed;

/// <summary>
/// A tensor-parallel group whose ranks are separate processes on one host (CPU workers, fp32 activations in host
/// memory), meeting in a shared-memory file: each rank copies its tensor into its own slot, announces its arrival, waits
/// for every other rank's, and reads their slots. An all-reduce sums each element over the ranks in rank order
/// (rank 0 + rank 1 + …), every rank the whole tensor, so every rank ends with bit-identical values, the same bits as
/// <see cref="Celer.Backends.Cpu.InProcessGroup"/>'s on the same inputs.
/// </summary>
/// <remarks>
/// <para>One barrier per collective. Each rank counts its collectives (every rank calls the same ones in the same order,
/// so the counts agree) and uses slot half n mod 2 for collective n, stores its data there, then stores n in its own
/// arrival counter and waits until every rank's counter is at least n. Reusing half h for collective n + 2 without a
/// second barrier is safe: a rank starts collective n + 2 only after its wait at n + 1 saw every rank arrive at n + 1,
/// and a rank arrives at n + 1 only after it finished reading collective n's slots. For the same reason a counter seen at
/// n or n + 1 (never n + 2, which needs this rank's own arrival at n + 1) means that rank's slot of half h still holds
/// collective n.</para>
/// <para>Fences: the arrival counter is stored with release semantics after the data and read with acquire semantics
/// before the data is read, so the data is visible to whoever sees the counter; the same release store orders this
/// rank's reads of collective n before its arrival at n + 1, which the writers of collective n + 2 wait for. Each counter
/// has one writer (its rank), as in <see cref="ShmRingBuffer"/>: no read-modify-write, no <see cref="Interlocked"/>.</para>
/// <para>A wait never lasts forever: every 10 ms it checks the ranks that have not arrived (with the liveness delegate, or
/// else the process id each rank recorded when it joined) and the ranks' closed flags, and past the timeout names the
/// ranks it is still waiting for. A collective whose wait fails leaves this rank out of step with the others, so the rank
/// leaves the group (its closed flag makes the others stop waiting at once) and every later call throws
/// <see cref="InvalidOperationException"/>. Arguments are checked before anything is shared, so a rejected call leaves the
/// group as it was.</para>
/// <para>One thread calls a rank's collectives (each rank runs its forward pass on one thread); a second calling at the
/// same time gets <see cref="InvalidOperationException"/>. <see cref="Dispose"/> may come from another thread: a waiting
/// collective leaves first, within 10 ms, with <see cref="ObjectDisposedException"/>.</para>
/// </remarks>
public sealed unsafe class ShmCollectives : ICollectives, IDisposable
{
    private const int Open = 0, LeftDisposed = 1, LeftFailed = 2;
    private const int AllReduceOperation = 1, AllGatherOperation = 2;

    private static readonly SearchValues<char> HexDigits = SearchValues.Create("0123456789abcdef");

    private readonly ShmCollectivesLayout _layout;
    private readonly string? _path;
    private readonly TimeSpan _timeout;
    private readonly Func<int, bool>? _isRankAlive;
    private long _collectives;
    private Exception? _brokenBy;
    private CallGate _gate;

    private ShmCollectives(ShmCollectivesLayout layout, string name, int rank, string? path, TimeSpan timeout, Func<int, bool>? isRankAlive)
    {
        _layout = layout;
        Name = name;
        Rank = rank;
        _path = path;
        _timeout = timeout;
        _isRankAlive = isRankAlive;
    }

    /// <summary>What the other ranks pass to <see cref="Join"/>: a file name under /dev/shm, unique per group.</summary>
    public string Name { get; }

    public int Rank { get; }

    public int Size => _layout.Size;

    /// <summary>The most bytes of data one rank may put into one collective.</summary>
    public long SlotBytes => _layout.SlotBytes;

    /// <summary>
    /// Creates a group of <paramref name="size"/> ranks and joins it as rank 0, reserving its memory now (two slots of
    /// <paramref name="slotBytes"/> per rank, so a too-small /dev/shm is an error here, not a SIGBUS later), and deletes
    /// the files that creators which died without disposing theirs left behind.
    /// </summary>
    /// <param name="slotBytes">The most one rank puts into one collective: an all-reduce's rows × columns × 4 bytes, an
    /// all-gather's part of it.</param>
    /// <param name="timeout">How long a collective may wait for the other ranks (<see cref="Timeout.InfiniteTimeSpan"/>:
    /// no limit); past it, <see cref="CollectiveTimeoutException"/> names the ranks that did not arrive.</param>
    /// <param name="isRankAlive">Asked, with a rank, every 10 ms while a collective waits for that rank (the executor
    /// answers from <c>Process.HasExited</c>; true when it cannot tell); a dead rank ends the wait with
    /// <see cref="CollectivePeerDiedException"/>. Without it, the process id each rank recorded when it joined is looked up.</param>
    public static ShmCollectives Create(int size, long slotBytes, TimeSpan timeout, Func<int, bool>? isRankAlive = null)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(size, 1);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(size, ShmCollectivesLayout.MaxRanks);
        ArgumentOutOfRangeException.ThrowIfLessThan(slotBytes, 1);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(slotBytes, ShmCollectivesLayout.MaxSlotBytes);
        BroadcastWait.Validate(timeout);
        StaleBroadcastFiles.Delete(ShmRingBuffer.Folder, ShmCollectivesLayout.NamePrefix);

        // As a broadcast queue's name: the process id tells a later creator a dead creator's file from a live one, the
        // random part keeps two groups of one process, or a creator that got a dead one's id, from opening each other's.
        string name = $"{ShmCollectivesLayout.NamePrefix}{Environment.ProcessId}-{Guid.NewGuid():N}";
        string path = Path.Combine(ShmRingBuffer.Folder, name);
        var layout = ShmCollectivesLayout.Create(path, size, slotBytes);
        // Before anyone has the name, so no fence: the others read it only to check this process is alive.
        layout.ProcessId(0) = Environment.ProcessId;
        return new ShmCollectives(layout, name, 0, path, timeout, isRankAlive);
    }

    /// <summary>Opens the group rank 0 created under <paramref name="name"/> as rank <paramref name="rank"/> (1 to size − 1,
    /// each taken by one process, before the group's first collective completes), recording this process's id for the
    /// others' liveness checks.</summary>
    /// <param name="timeout">As <see cref="Create"/>'s, for this rank's waits.</param>
    /// <param name="isRankAlive">As <see cref="Create"/>'s, for this rank's waits (a worker answers for its parent and
    /// says true for ranks it cannot see).</param>
    public static ShmCollectives Join(string name, int rank, TimeSpan timeout, Func<int, bool>? isRankAlive = null)
    {
        // Only names Create makes: the name comes from another process's command line and is joined to a folder.
        if (!IsGroupName(name))
        {
            throw new ArgumentException($"'{name}' is not a collective group name ({ShmCollectivesLayout.NamePrefix}<pid>-<32 hex digits>).", nameof(name));
        }

        if (rank < 1)
        {
            throw new ArgumentOutOfRangeException(nameof(rank), rank, "Rank 0 creates the group (ShmCollectives.Create); the others join as ranks 1 to size − 1.");
        }

        BroadcastWait.Validate(timeout);
        string path = Path.Combine(ShmRingBuffer.Folder, name);
        FileStream stream;
        try
        {
#pragma warning disable CA2000 // the layout owns the stream (its mapping closes it) or disposes it when the file is not a group
            stream = new FileStream(path, FileMode.Open, FileAccess.ReadWrite, FileShare.ReadWrite | FileShare.Delete);
#pragma warning restore CA2000
        }
        catch (FileNotFoundException e)
        {
            throw new FileNotFoundException($"There is no collective group '{name}' in {ShmRingBuffer.Folder}: rank 0 closed it or the name is wrong.", path, e);
        }

        var layout = ShmCollectivesLayout.Open(stream, name);
        if (rank >= layout.Size)
        {
            int size = layout.Size;
            layout.Dispose();
            throw new ArgumentOutOfRangeException(nameof(rank), rank, $"Collective group '{name}' has {size} rank(s), 0 to {size - 1}.");
        }

        int holder = Interlocked.CompareExchange(ref layout.ProcessId(rank), Environment.ProcessId, 0);
        if (holder != 0)
        {
            layout.Dispose();
            throw new InvalidOperationException($"Rank {rank} of collective group '{name}' was already joined (by process {holder}).");
        }

        return new ShmCollectives(layout, name, rank, null, timeout, isRankAlive);
    }

    public void AllReduce(Tensor x, int rows)
    {
        float* own = Floats(x, "all-reduce");
        int count = CheckFits(x, rows, "An all-reduce", nameof(x));
        _gate.Enter(this);
        try
        {
            int half = Meet(AllReduceOperation, rows, x.Columns, own, count);
            var sum = new Span<float>(own, count);
            _layout.Data(half, 0, count).CopyTo(sum);
            for (int rank = 1; rank < Size; rank++)
            {
                // Element-wise adds are exactly rounded whether scalar or vector, so this is (x0 + x1) + x2 … bit for bit.
                TensorPrimitives.Add(sum, _layout.Data(half, rank, count), sum);
            }
        }
        finally
        {
            _gate.Exit();
        }
    }

    public void AllGatherColumns(Tensor local, int rows, Tensor output)
    {
        int columns = checked((int)local.Columns), width = checked((int)output.Columns);
        CollectiveArguments.RequireGatherWidth(local, output, Size);

        float* part = Floats(local, "all-gather");
        float* gathered = Floats(output, "all-gather");
        ArgumentOutOfRangeException.ThrowIfGreaterThan(rows, output.Rows);
        int count = CheckFits(local, rows, "An all-gather", nameof(local));
        _gate.Enter(this);
        try
        {
            int half = Meet(AllGatherOperation, rows, columns, part, count);
            for (int rank = 0; rank < Size; rank++)
            {
                fixed (float* published = _layout.Data(half, rank, count))
                {
                    HostCollectives.PlaceColumns(published, rows, columns, gathered, width, rank);
                }
            }
        }
        finally
        {
            _gate.Exit();
        }
    }

    /// <summary>Leaves the group (ranks waiting for this one stop within 10 ms) and unmaps it; rank 0 also deletes the
    /// file. A collective waiting on another thread leaves first, with <see cref="ObjectDisposedException"/>.</summary>
    public void Dispose()
    {
        if (!_gate.Close())
        {
            return;
        }

        Leave(LeftDisposed);
        _layout.Dispose();
        if (_path is not null)
        {
            // Ranks that have the file mapped keep their mapping; the name goes so no one opens it again.
            File.Delete(_path);
        }
    }

    private static bool IsGroupName(string name)
    {
        if (!name.StartsWith(ShmCollectivesLayout.NamePrefix, StringComparison.Ordinal))
        {
            return false;
        }

        ReadOnlySpan<char> rest = name.AsSpan(ShmCollectivesLayout.NamePrefix.Length);
        int dash = rest.IndexOf('-');
        ReadOnlySpan<char> random = rest[(dash + 1)..];
        return dash is > 0 and <= 10 && rest[..dash].IndexOfAnyExceptInRange('0', '9') < 0 && random.Length == 32 && random.IndexOfAnyExcept(HexDigits) < 0;
    }

    private static float* Floats(Tensor x, string operation) => HostCollectives.Floats(x, "shared-memory group", operation);

    private static string Describe(int operation, int rows, long columns) =>
        $"{(operation == AllReduceOperation ? "an all-reduce" : operation == AllGatherOperation ? "an all-gather" : $"operation {operation}")} of {rows} × {columns}";

    /// <summary>Checks that rows 0 .. <paramref name="rows"/> − 1 of <paramref name="x"/> exist and fit a slot, and returns
    /// their number of floats.</summary>
    private int CheckFits(Tensor x, int rows, string collective, string parameter)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(rows);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(rows, x.Rows);
        long bytes = rows * x.Columns * sizeof(float);
        if (bytes > SlotBytes)
        {
            throw new ArgumentException(
                $"{collective} of {rows} rows × {x.Columns} columns is {bytes} bytes per rank, more than the {SlotBytes}-byte slot " +
                $"each rank has in collective group '{Name}' (ShmCollectives.Create's slotBytes).", parameter);
        }

        return (int)(rows * x.Columns);
    }

    /// <summary>The barrier: publishes this rank's <paramref name="count"/> floats from <paramref name="data"/> for the
    /// next collective, waits until every rank has published its own, checks they all ran the same collective, and returns
    /// the slot half the collective's data is in.</summary>
    private int Meet(int operation, int rows, long columns, float* data, int count)
    {
        if (_brokenBy is not null)
        {
            throw new InvalidOperationException(
                $"Collective group '{Name}', rank {Rank}, is broken: an earlier collective failed ({_brokenBy.Message}).", _brokenBy);
        }

        long collective = _collectives + 1;
        int half = (int)(collective % 2);
        _layout.Operation(half, Rank) = operation;
        _layout.Rows(half, Rank) = rows;
        _layout.Columns(half, Rank) = columns;
        new ReadOnlySpan<float>(data, count).CopyTo(_layout.Data(half, Rank, count));
        // Release: the data and its shape above reach the other ranks no later than the arrival that says they are there,
        // and this rank's reads of the previous collective's slots complete before it (Arm64: stlr; x86 keeps stores in
        // order and never moves a store above a load, so this only stops the JIT from moving them).
        Volatile.Write(ref _layout.Arrived(Rank), collective);
        _collectives = collective;
        try
        {
            WaitForArrivals(collective);
            CheckSameCollective(collective, half, operation, rows, columns);
        }
        catch (Exception e)
        {
            _brokenBy = e;
            if (e is not ObjectDisposedException)
            {
                Leave(LeftFailed);
            }

            throw;
        }

        return half;
    }

    private void WaitForArrivals(long collective)
    {
        if (AllArrived(collective))
        {
            return;
        }

        var wait = new BroadcastWait(_timeout);
        while (!AllArrived(collective))
        {
            if (!wait.Pause(CancellationToken.None))
            {
                continue;
            }

            ObjectDisposedException.ThrowIf(_gate.DisposeRequested, this);
            ThrowIfARankLeft(collective);
            ThrowIfARankDied(collective, wait);
            if (wait.TimedOut)
            {
                ThrowIfStuck(collective);
            }
        }
    }

    private void ThrowIfARankLeft(long collective)
    {
        for (int rank = 0; rank < Size; rank++)
        {
            // Acquire: a rank stores its closed flag after its last arrival, so the arrivals read after this flag are
            // final; a collective every rank reached still completes (the last one before a normal shutdown), but one
            // that waits for anyone while a rank has left cannot: that rank will not reach the next.
            int reason = rank == Rank ? Open : Volatile.Read(ref _layout.Closed(rank));
            if (reason != Open && !AllArrived(collective))
            {
                throw new CollectiveGroupClosedException(
                    $"Collective group '{Name}': rank {rank} left the group ({(reason == LeftDisposed ? "it was disposed" : "one of its collectives failed")}) " +
                    $"while rank {Rank} waited for collective {collective}.", rank);
            }
        }
    }

    private void ThrowIfARankDied(long collective, in BroadcastWait wait)
    {
        for (int rank = 0; rank < Size; rank++)
        {
            // A process's stores reach shared memory before it is seen to have exited, so the counter is read again after
            // the liveness check: a rank that arrived and then died is not reported, only one that never arrived.
            if (!HasArrived(rank, collective) && !IsAlive(rank) && !HasArrived(rank, collective))
            {
                throw new CollectivePeerDiedException(
                    $"Collective group '{Name}': rank {rank} died before collective {collective}; rank {Rank} waited " +
                    $"{wait.Elapsed.TotalMilliseconds:F0} ms for it.", rank);
            }
        }
    }

    // Its own method: a lambda capturing the wait's locals would make every collective allocate its closure on entry.
    private void ThrowIfStuck(long collective)
    {
        int[] stuck = [.. Enumerable.Range(0, Size).Where(rank => !HasArrived(rank, collective))];
        if (stuck.Length > 0)
        {
            throw new CollectiveTimeoutException(
                $"Collective group '{Name}': rank(s) {string.Join(", ", stuck)} did not reach collective {collective} within " +
                $"{_timeout.TotalMilliseconds:F0} ms; rank {Rank} waited for them.", stuck);
        }
    }

    private bool IsAlive(int rank)
    {
        if (_isRankAlive is not null)
        {
            return _isRankAlive(rank);
        }

        // 0: the rank has not joined yet, so there is no process to ask about; the timeout covers one that never does.
        int processId = Volatile.Read(ref _layout.ProcessId(rank));
        return processId == 0 || StaleBroadcastFiles.IsRunning(processId);
    }

    /// <summary>Every rank ran the same collective on the same shape: otherwise their steps diverged (a bug), and summing
    /// or gathering would read past the data another rank published.</summary>
    private void CheckSameCollective(long collective, int half, int operation, int rows, long columns)
    {
        for (int rank = 0; rank < Size; rank++)
        {
            int theirs = _layout.Operation(half, rank), theirRows = _layout.Rows(half, rank);
            long theirColumns = _layout.Columns(half, rank);
            if (theirs != operation || theirRows != rows || theirColumns != columns)
            {
                throw new InvalidOperationException(
                    $"Collective group '{Name}': collective {collective} is {Describe(operation, rows, columns)} on rank {Rank} " +
                    $"but {Describe(theirs, theirRows, theirColumns)} on rank {rank}; the ranks ran different steps.");
            }
        }
    }

    private bool AllArrived(long collective)
    {
        for (int rank = 0; rank < Size; rank++)
        {
            if (!HasArrived(rank, collective))
            {
                return false;
            }
        }

        return true;
    }

    // Acquire: the rank's data and shape, stored before its release store of the counter, are visible to the loads that
    // follow (Arm64: ldar; on x86 loads are not reordered with loads, so this only keeps the JIT from hoisting the load
    // out of the spin loop or moving the data loads above it).
    private bool HasArrived(int rank, long collective) => Volatile.Read(ref _layout.Arrived(rank)) >= collective;

    /// <summary>Marks this rank as gone, once: the first reason stands.</summary>
    private void Leave(int reason)
    {
        if (_layout.Closed(Rank) == Open)
        {
            // Release: the arrivals stored before are visible to a rank that sees the flag (see ThrowIfARankLeft).
            Volatile.Write(ref _layout.Closed(Rank), reason);
        }
    }
}
