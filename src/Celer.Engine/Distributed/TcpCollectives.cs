using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Text;
using Celer.Models.Backend;
using Celer.Models.Weights;
using static Celer.Engine.Distributed.TcpCollectivesFrames;
using TensorPrimitives = System.Numerics.Tensors.TensorPrimitives;

namespace Celer.Engine.Distributed;

/// <summary>
/// A tensor-parallel group whose ranks are processes on different hosts (CPU workers, fp32 activations in host memory),
/// meeting over TCP: the shared-memory group's collectives (<see cref="ShmCollectives"/>) for ranks that cannot share
/// memory, as vLLM's <c>--nnodes</c> serving needs. Every rank ends an all-reduce with the sum in rank order
/// (rank 0 + rank 1 + …), bit for bit what <see cref="Celer.Backends.Cpu.InProcessGroup"/> gives on the same inputs.
/// </summary>
/// <remarks>
/// <para>A star through rank 0, the simplest topology that keeps the rank-order sum: every other rank sends its rows to
/// rank 0, which sums them in rank order into its own tensor (or assembles the gathered rows into its output) and sends
/// the result back to each. Rank 0 carries 2 × (size − 1) times a rank's data per collective where a ring would carry
/// about 2; the groups this serves are a few CPU hosts, whose matrix products take far longer than the transfers.</para>
/// <para>Rank 0 listens from <see cref="Create"/> on and accepts the other ranks in the background, so the engine can
/// hand <see cref="LocalEndPoint"/> to its workers and go on; <see cref="WaitForRanks"/>, or else the first collective,
/// waits for them. A connection starts with a hello (magic number, protocol version, rank, size) that rank 0 checks; a
/// wrong one, a rank that already joined, or a stray connection is answered with the reason and closed, and the latest
/// such refusals are quoted if the group then does not fill up.</para>
/// <para>Every frame carries a header (operation, the group's collective number, rows, columns) that its receiver
/// checks against its own collective, so ranks that ran different steps fail with both steps named instead of mixing
/// data. The floats travel as raw bytes from and into the tensors, over non-blocking sockets one thread moves together;
/// rank 0 receives into buffers it keeps, so a collective allocates nothing once the buffers have grown.</para>
/// <para>Failures: a connection that closes or resets is <see cref="CollectivePeerDiedException"/> naming that rank; a
/// rank that moves no data for the timeout is <see cref="CollectiveTimeoutException"/> naming the ranks still owed. A
/// failed collective leaves the group broken (later calls throw <see cref="InvalidOperationException"/>) and the rank
/// closes its connections after a leave frame saying why, so the others stop at once: a rank whose peer died fails with
/// the died exception naming the dead rank, any other with <see cref="CollectiveGroupClosedException"/>. Arguments are
/// checked before anything is sent, so a rejected call leaves the group as it was.</para>
/// <para>One thread calls a rank's collectives; a second calling at the same time gets
/// <see cref="InvalidOperationException"/>. <see cref="Dispose"/> may come from another thread: a waiting collective
/// leaves first, within 10 ms, with <see cref="ObjectDisposedException"/>, and the other ranks are told.</para>
/// </remarks>
public sealed unsafe class TcpCollectives : ICollectives, IDisposable
{
    /// <summary>Far above any tensor-parallel group; bounds what a rank-0 command line can make it allocate.</summary>
    public const int MaxRanks = 4096;

    // Large enough that a rank's rows of a decoding step (hidden size × batch × 4 bytes, a few MiB) go out in one call
    // without waiting for acknowledgements; the kernel caps it at net.core.[rw]mem_max.
    private const int SocketBufferBytes = 4 << 20;

    // How often a wait looks at the clock and at Dispose, as the shared-memory group's waits do.
    private const int WaitSliceMicroseconds = 10_000;
    private static readonly TimeSpan WaitSlice = TimeSpan.FromMilliseconds(10);

    // Between attempts to reach a rank 0 that is not listening yet.
    private static readonly TimeSpan RetryPause = TimeSpan.FromMilliseconds(100);

    private readonly TcpRankAcceptor? _acceptor;
    private readonly string _label;
    private readonly TimeSpan _timeout;
    private readonly long _timeoutTicks;
    private readonly long[] _lastProgress;
    private readonly float[]?[] _parts;
    private readonly List<Socket> _readable = [], _writable = [];
    private TcpLink[]? _peers;
    private long _collectives;
    private Exception? _brokenBy;
    private CallGate _gate;

    // The collective in progress: what incoming frames must say, and where a reply goes (ranks other than 0).
    private int _kind, _rows, _frameColumns;
    private byte* _replyTarget;

    // A leave frame being received, and the reason a rank that left gave (rank 0 passes it on).
    private TcpLink? _leaving;
    private string? _leaveReason;

    private TcpCollectives(int rank, int size, TimeSpan timeout, string label, TcpRankAcceptor? acceptor, TcpLink[]? peers, IPEndPoint localEndPoint)
    {
        Rank = rank;
        Size = size;
        _timeout = timeout;
        _timeoutTicks = timeout == Timeout.InfiniteTimeSpan || timeout.TotalSeconds * Stopwatch.Frequency >= 9e18
            ? long.MaxValue
            : (long)(timeout.TotalSeconds * Stopwatch.Frequency);
        _label = label;
        _acceptor = acceptor;
        _peers = peers;
        LocalEndPoint = localEndPoint;
        _lastProgress = new long[size];
        _parts = new float[rank == 0 ? size : 0][];
    }

    public int Rank { get; }

    public int Size { get; }

    /// <summary>Rank 0: the address it listens on, with the port the system chose when asked for port 0 (what the other
    /// ranks pass to <see cref="Join"/>). Another rank: its end of the connection to rank 0.</summary>
    public IPEndPoint LocalEndPoint { get; }

    /// <summary>
    /// Makes a group of <paramref name="size"/> ranks as rank 0: listens on <paramref name="listen"/> (port 0: one the
    /// system picks, see <see cref="LocalEndPoint"/>) and returns at once, accepting the other ranks in the background.
    /// </summary>
    /// <param name="timeout">How long a collective may go without data from a rank it waits for, and how long the first
    /// collective waits for the ranks to join (<see cref="Timeout.InfiniteTimeSpan"/>: no limit).</param>
    public static TcpCollectives Create(IPEndPoint listen, int size, TimeSpan timeout)
    {
        ArgumentNullException.ThrowIfNull(listen);
        ArgumentOutOfRangeException.ThrowIfLessThan(size, 1);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(size, MaxRanks);
        ValidateTimeout(timeout);
        var acceptor = TcpRankAcceptor.Start(listen, size);
        return new TcpCollectives(0, size, timeout, $"Collective group at {acceptor.LocalEndPoint}", acceptor, null, acceptor.LocalEndPoint);
    }

    /// <summary>
    /// Joins the group rank 0 made at <paramref name="host"/>:<paramref name="port"/> as <paramref name="rank"/> (1 to
    /// <paramref name="size"/> − 1), trying again until <paramref name="timeout"/> while rank 0 is not listening yet, and
    /// returns once rank 0 has accepted the rank.
    /// </summary>
    /// <param name="timeout">How long to keep trying to reach rank 0, and, as <see cref="Create"/>'s, for this rank's collectives.</param>
    /// <exception cref="CollectiveTimeoutException">Rank 0 could not be reached, or did not answer, within the timeout.</exception>
    /// <exception cref="InvalidOperationException">Rank 0 refused the rank (it says why: the rank already joined, the sizes differ, …).</exception>
    public static TcpCollectives Join(string host, int port, int rank, int size, TimeSpan timeout)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(host);
        ArgumentOutOfRangeException.ThrowIfLessThan(port, 1);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(port, IPEndPoint.MaxPort);
        ArgumentOutOfRangeException.ThrowIfLessThan(size, 2);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(size, MaxRanks);
        if (rank < 1 || rank >= size)
        {
            throw new ArgumentOutOfRangeException(nameof(rank), rank, $"Rank 0 creates the group (TcpCollectives.Create); the others join as ranks 1 to {size - 1}.");
        }

        ValidateTimeout(timeout);
        string label = $"Collective group at {host}:{port}";
        var clock = Stopwatch.StartNew();
        Socket socket = Connect(host, port, timeout, clock, label);
        try
        {
            string remote = socket.RemoteEndPoint?.ToString() ?? $"{host}:{port}";
            int patience = timeout == Timeout.InfiniteTimeSpan ? 0 : Math.Max(1, (int)Math.Min(int.MaxValue, (timeout - clock.Elapsed).TotalMilliseconds));
            socket.SendTimeout = socket.ReceiveTimeout = patience;
            byte[] hello = new byte[HelloBytes];
            WriteHello(hello, rank, size);
            socket.Send(hello);
            byte[] answer = new byte[AnswerBytes];
            ReceiveAnswer(socket, answer, label, rank);
            if (!ReadAnswer(answer, out bool refused, out int reasonBytes))
            {
                throw new InvalidDataException(
                    $"{host}:{port} answered rank {rank}'s hello, but not as rank 0 of a Celer collective group of protocol version {ProtocolVersion}.");
            }

            if (refused)
            {
                byte[] reason = new byte[reasonBytes];
                ReceiveAnswer(socket, reason, label, rank);
                throw new InvalidOperationException($"Rank 0 of the collective group at {host}:{port} refused rank {rank}: {Encoding.UTF8.GetString(reason)}.");
            }

            var localEndPoint = (IPEndPoint)socket.LocalEndPoint!;
            return new TcpCollectives(rank, size, timeout, label, null, [new TcpLink(socket, 0, remote)], localEndPoint);
        }
        catch (SocketException e) when (e.SocketErrorCode == SocketError.TimedOut)
        {
            socket.Dispose();
            throw new CollectiveTimeoutException($"{label}: rank 0 did not answer rank {rank}'s hello within {timeout.TotalMilliseconds:F0} ms.", [0]);
        }
        catch
        {
            socket.Dispose();
            throw;
        }
    }

    /// <summary>Rank 0: waits until every other rank has joined; past <paramref name="timeout"/>,
    /// <see cref="CollectiveTimeoutException"/> names the missing ranks and quotes the connections turned away meanwhile
    /// (the group stays usable: a later call may wait again). Other ranks joined in <see cref="Join"/>: returns at once.</summary>
    public void WaitForRanks(TimeSpan timeout)
    {
        ValidateTimeout(timeout);
        _gate.Enter(this);
        try
        {
            ThrowIfBroken();
            WaitForJoins(timeout, null);
        }
        finally
        {
            _gate.Exit();
        }
    }

    public void AllReduce(Tensor x, int rows)
    {
        float* own = Floats(x, "all-reduce");
        int count = CheckPart(x, rows, "An all-reduce", nameof(x));
        int columns = (int)x.Columns;
        _gate.Enter(this);
        try
        {
            long collective = Begin();
            try
            {
                Expect(KindAllReduce, rows, columns, (byte*)own);
                if (Rank == 0)
                {
                    ReceiveParts(collective, count);
                    var sum = new Span<float>(own, count);
                    for (int rank = 1; rank < Size; rank++)
                    {
                        // Element-wise adds are exactly rounded whether scalar or vector, so this is (x0 + x1) + x2 … bit for bit.
                        TensorPrimitives.Add(sum, _parts[rank].AsSpan(0, count), sum);
                    }

                    SendResult(collective, KindAllReduce, rows, columns, (byte*)own);
                }
                else
                {
                    Exchange(collective, KindAllReduce, rows, columns, (byte*)own, count);
                }
            }
            catch (Exception e) when (e is not ObjectDisposedException)
            {
                Break(e, collective);
                throw;
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
        int count = CheckPart(local, rows, "An all-gather", nameof(local));
        _gate.Enter(this);
        try
        {
            long collective = Begin();
            try
            {
                if (Rank == 0)
                {
                    Expect(KindAllGather, rows, columns, null);
                    ReceiveParts(collective, count);
                    for (int rank = 0; rank < Size; rank++)
                    {
                        HostCollectives.PlaceColumns(rank == 0 ? part : (float*)ArrayPointer(_parts[rank]!), rows, columns, gathered, width, rank);
                    }

                    SendResult(collective, KindAllGather, rows, width, (byte*)gathered);
                }
                else
                {
                    // The answer is the whole gathered rows, which lie one after the other in the output.
                    Expect(KindAllGather, rows, width, (byte*)gathered);
                    _peers![0].PostSend(KindAllGather, collective, rows, columns, (byte*)part, (long)count * sizeof(float));
                    _peers[0].PostReceive();
                    Pump(collective);
                }
            }
            catch (Exception e) when (e is not ObjectDisposedException)
            {
                Break(e, collective);
                throw;
            }
        }
        finally
        {
            _gate.Exit();
        }
    }

    /// <summary>Tells the other ranks this one left (they stop waiting at once), closes its connections, and stops
    /// listening. A collective waiting on another thread leaves first, with <see cref="ObjectDisposedException"/>.</summary>
    public void Dispose()
    {
        if (!_gate.Close())
        {
            return;
        }

        if (_brokenBy is null)
        {
            CloseConnections(KindLeft, Rank, "it was disposed", _collectives);
        }

        _acceptor?.Dispose();
    }

    /// <summary>No delay for small frames (a decoding step's rows are a few KiB and every rank waits for them), large
    /// buffers for large ones.</summary>
    internal static void Tune(Socket socket)
    {
        socket.NoDelay = true;
        socket.SendBufferSize = SocketBufferBytes;
        socket.ReceiveBufferSize = SocketBufferBytes;
    }

    private static void ValidateTimeout(TimeSpan timeout)
    {
        if (timeout < TimeSpan.Zero && timeout != Timeout.InfiniteTimeSpan)
        {
            throw new ArgumentOutOfRangeException(nameof(timeout), timeout, "A collective group's timeout is non-negative or Timeout.InfiniteTimeSpan.");
        }
    }

    private static Socket Connect(string host, int port, TimeSpan timeout, Stopwatch clock, string label)
    {
        while (true)
        {
            // Dual mode where the system has IPv6, so a host name or address of either family works.
            var socket = new Socket(SocketType.Stream, ProtocolType.Tcp);
            Tune(socket);
            string error;
            try
            {
                TimeSpan left = timeout == Timeout.InfiniteTimeSpan ? Timeout.InfiniteTimeSpan : TimeSpan.FromTicks(Math.Max(0, (timeout - clock.Elapsed).Ticks));
                using var attempt = new CancellationTokenSource(left);
                socket.ConnectAsync(host, port, attempt.Token).AsTask().GetAwaiter().GetResult();
                return socket;
            }
            catch (SocketException e)
            {
                error = e.Message;
            }
            catch (OperationCanceledException)
            {
                error = "the last attempt did not connect in time";
            }

            socket.Dispose();
            if (timeout != Timeout.InfiniteTimeSpan && clock.Elapsed >= timeout)
            {
                throw new CollectiveTimeoutException(
                    $"{label}: rank 0 could not be reached within {timeout.TotalMilliseconds:F0} ms ({error}); is it listening there?", [0]);
            }

            Thread.Sleep(RetryPause);
        }
    }

    private static void ReceiveAnswer(Socket socket, byte[] into, string label, int rank)
    {
        for (int read = 0; read < into.Length;)
        {
            int received = socket.Receive(into, read, into.Length - read, SocketFlags.None);
            if (received == 0)
            {
                throw new IOException($"{label}: rank 0 closed the connection before answering rank {rank}'s hello.");
            }

            read += received;
        }
    }

    private static float* Floats(Tensor x, string operation) => HostCollectives.Floats(x, "TCP group", operation);

    private static byte* ArrayPointer(float[] array) => (byte*)Unsafe.AsPointer(ref MemoryMarshal.GetArrayDataReference(array));

    private static string Describe(int kind, int rows, long columns) =>
        $"{(kind == KindAllReduce ? "an all-reduce" : kind == KindAllGather ? "an all-gather" : $"operation {kind}")} of {rows} × {columns}";

    /// <summary>Checks that rows 0 .. <paramref name="rows"/> − 1 of <paramref name="x"/> exist and fit one frame, and
    /// returns their number of floats.</summary>
    private static int CheckPart(Tensor x, int rows, string collective, string parameter)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(rows);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(rows, x.Rows);
        long count = rows * x.Columns;
        if (count > int.MaxValue || x.Columns > int.MaxValue)
        {
            throw new ArgumentException(
                $"{collective} of {rows} rows × {x.Columns} columns is {count * sizeof(float)} bytes per rank, more than the " +
                $"{(long)int.MaxValue * sizeof(float)} bytes a rank sends in one collective of a TCP group (int.MaxValue floats).", parameter);
        }

        return (int)count;
    }

    private void ThrowIfBroken()
    {
        if (_brokenBy is not null)
        {
            throw new InvalidOperationException($"{_label}, rank {Rank}, is broken: an earlier collective failed ({_brokenBy.Message}).", _brokenBy);
        }
    }

    /// <summary>Numbers the next collective; rank 0 first waits for the ranks still to join.</summary>
    private long Begin()
    {
        ThrowIfBroken();
        long collective = ++_collectives;
        if (_peers is null)
        {
            try
            {
                WaitForJoins(_timeout, collective);
            }
            catch (Exception e) when (e is not ObjectDisposedException)
            {
                Break(e, collective);
                throw;
            }
        }

        return collective;
    }

    private void WaitForJoins(TimeSpan timeout, long? collective)
    {
        if (_peers is not null)
        {
            return;
        }

        var clock = Stopwatch.StartNew();
        while (!_acceptor!.WaitForAll(WaitSlice))
        {
            ObjectDisposedException.ThrowIf(_gate.DisposeRequested, this);
            if (timeout != Timeout.InfiniteTimeSpan && clock.Elapsed >= timeout)
            {
                int[] missing = _acceptor.Missing();
                throw new CollectiveTimeoutException(
                    $"{_label}: rank(s) {string.Join(", ", missing)} did not join within {timeout.TotalMilliseconds:F0} ms" +
                    $"{(collective is { } n ? $", so collective {n} could not start" : "")}{_acceptor.Refusals()}.", missing);
            }
        }

        _peers = _acceptor.Links();
    }

    private void Expect(int kind, int rows, int frameColumns, byte* replyTarget)
    {
        _kind = kind;
        _rows = rows;
        _frameColumns = frameColumns;
        _replyTarget = replyTarget;
    }

    /// <summary>Rank 0: every other rank's <paramref name="count"/> floats, each into its own buffer.</summary>
    private void ReceiveParts(long collective, int count)
    {
        foreach (TcpLink peer in _peers!)
        {
            if (_parts[peer.Rank] is not { } buffer || buffer.Length < count)
            {
                // Pinned: the sockets write into it through a pointer.
                _parts[peer.Rank] = GC.AllocateUninitializedArray<float>(count, pinned: true);
            }

            peer.PostReceive();
        }

        Pump(collective);
    }

    /// <summary>Rank 0: the result, <paramref name="rows"/> × <paramref name="columns"/> floats, to every other rank.</summary>
    private void SendResult(long collective, int kind, int rows, int columns, byte* result)
    {
        foreach (TcpLink peer in _peers!)
        {
            peer.PostSend(kind, collective, rows, columns, result, (long)rows * columns * sizeof(float));
        }

        Pump(collective);
    }

    /// <summary>A rank other than 0: sends its part and receives rank 0's answer in its place.</summary>
    private void Exchange(long collective, int kind, int rows, int columns, byte* data, int count)
    {
        // The answer cannot overwrite the part before it is out: rank 0 answers only once it has received all of it.
        _peers![0].PostSend(kind, collective, rows, columns, data, (long)count * sizeof(float));
        _peers[0].PostReceive();
        Pump(collective);
    }

    /// <summary>Moves the posted frames of every connection until all are through, waiting for the sockets 10 ms at a
    /// time in between to look at <see cref="Dispose"/> and the clock.</summary>
    private void Pump(long collective)
    {
        TcpLink[] peers = _peers!;
        long start = Stopwatch.GetTimestamp();
        foreach (TcpLink peer in peers)
        {
            _lastProgress[peer.Rank] = start;
        }

        while (true)
        {
            _readable.Clear();
            _writable.Clear();
            long now = Stopwatch.GetTimestamp();
            foreach (TcpLink peer in peers)
            {
                if (peer.Sending)
                {
                    if (peer.Send(out long sent) != SocketError.Success)
                    {
                        // The peer is gone; what it said before going (a leave frame), or its end of stream, comes in on
                        // the receiving side and says which failure this is.
                        peer.AbandonSend();
                        if (!peer.Receiving)
                        {
                            peer.PostReceive();
                        }
                    }
                    else if (sent > 0)
                    {
                        _lastProgress[peer.Rank] = now;
                    }

                    if (peer.Sending)
                    {
                        _writable.Add(peer.Socket);
                    }
                }

                while (peer.Receiving)
                {
                    SocketError error = peer.Receive(out long received);
                    if (received > 0)
                    {
                        _lastProgress[peer.Rank] = now;
                    }

                    if (error != SocketError.Success)
                    {
                        throw Died(peer, error, collective, start);
                    }

                    if (!peer.HeaderArrived)
                    {
                        break;
                    }

                    OnHeader(peer, collective);
                }

                if (peer.Receiving)
                {
                    _readable.Add(peer.Socket);
                }
                else if (_leaving == peer)
                {
                    throw LeaveFrom(peer, collective);
                }
            }

            if (_readable.Count == 0 && _writable.Count == 0)
            {
                return;
            }

            ObjectDisposedException.ThrowIf(_gate.DisposeRequested, this);
            ThrowIfStuck(collective, now);
            Socket.Select(_readable, _writable, null, WaitSliceMicroseconds);
        }
    }

    /// <summary>A frame's header is in: checks it is the collective this rank runs and says where its payload goes.</summary>
    private void OnHeader(TcpLink peer, long collective)
    {
        if (!ReadHeader(peer.Header, out int kind, out long sequence, out int rows, out int columns))
        {
            throw new InvalidDataException($"{_label}: rank {peer.Rank} sent bytes that are not a collective frame during collective {collective}; the stream lost its place.");
        }

        if (kind is KindDied or KindLeft)
        {
            if (columns is < 0 or > MaxReasonBytes)
            {
                throw new InvalidDataException($"{_label}: rank {peer.Rank} sent a leave frame with a {columns}-byte reason during collective {collective}.");
            }

            _leaving = peer;
            peer.ReceivePayload(peer.ReasonBuffer, columns);
            return;
        }

        if (kind != _kind || sequence != collective || rows != _rows || columns != _frameColumns)
        {
            string mine = Describe(_kind, _rows, _frameColumns), theirs = Describe(kind, rows, columns);
            throw new InvalidOperationException(sequence == collective
                ? $"{_label}: collective {collective} is {mine} on rank {Rank} but {theirs} on rank {peer.Rank}; the ranks ran different steps."
                : $"{_label}: rank {Rank} is at collective {collective} ({mine}) but rank {peer.Rank} sent collective {sequence} ({theirs}); the ranks ran different steps.");
        }

        byte* target = Rank == 0 ? ArrayPointer(_parts[peer.Rank]!) : _replyTarget;
        peer.ReceivePayload(target, (long)rows * columns * sizeof(float));
    }

    /// <summary>The failure a leave frame that came in from <paramref name="peer"/> reports.</summary>
    private Exception LeaveFrom(TcpLink peer, long collective)
    {
        ReadHeader(peer.Header, out int kind, out _, out int named, out int reasonBytes);
        string reason = peer.Reason(reasonBytes);
        if (kind == KindDied)
        {
            return new CollectivePeerDiedException($"{reason} Rank {peer.Rank} closed the group on it, so rank {Rank} stopped waiting for collective {collective}.", named);
        }

        _leaveReason = reason;
        return new CollectiveGroupClosedException($"{_label}: rank {named} left the group ({reason}) while rank {Rank} waited for collective {collective}.", named);
    }

    private CollectivePeerDiedException Died(TcpLink peer, SocketError error, long collective, long start) => new(
        $"{_label}: rank {peer.Rank}'s connection ({peer.Remote}) {(error == TcpLink.EndOfStream ? "closed" : $"failed ({error})")} during collective " +
        $"{collective}: the rank died or its host went away; rank {Rank} noticed after {Stopwatch.GetElapsedTime(start).TotalMilliseconds:F0} ms.", peer.Rank);

    private void ThrowIfStuck(long collective, long now)
    {
        bool any = false;
        foreach (TcpLink peer in _peers!)
        {
            any |= IsStuck(peer, now);
        }

        if (any)
        {
            throw Stuck(collective, now);
        }
    }

    // Its own method: a lambda capturing the clock would make every wait allocate its closure on entry.
    private CollectiveTimeoutException Stuck(long collective, long now)
    {
        int[] stuck = [.. _peers!.Where(peer => IsStuck(peer, now)).Select(peer => peer.Rank)];
        return new CollectiveTimeoutException(
            $"{_label}: rank(s) {string.Join(", ", stuck)} moved no data of collective {collective} within {_timeout.TotalMilliseconds:F0} ms; " +
            $"rank {Rank} waited for them{(Rank == 0 ? "" : " (rank 0 answers once every rank has sent its part)")}.", stuck);
    }

    private bool IsStuck(TcpLink peer, long now) => (peer.Sending || peer.Receiving) && now - _lastProgress[peer.Rank] >= _timeoutTicks;

    /// <summary>After a failed collective: this rank is out of step for good, so it closes the group, telling the others
    /// why (a died rank stays named as such, a rank that left passes on that rank's reason).</summary>
    private void Break(Exception e, long collective)
    {
        _brokenBy = e;
        (int kind, int named, string reason) = e switch
        {
            CollectivePeerDiedException died => (KindDied, died.Rank, e.Message),
            CollectiveGroupClosedException closed => (KindLeft, closed.Rank, _leaveReason ?? e.Message),
            _ => (KindLeft, Rank, $"one of its collectives failed: {e.Message}"),
        };
        CloseConnections(kind, named, reason, collective);
    }

    private void CloseConnections(int kind, int named, string reason, long collective)
    {
        byte[] frame = TcpCollectivesFrames.Leave(kind, collective, named, reason);
        foreach (TcpLink peer in _acceptor?.Close() ?? _peers ?? [])
        {
            peer.TrySendLeave(frame);
            peer.Close();
        }
    }
}
