using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using static Celer.Engine.Distributed.TcpBroadcastFrames;

namespace Celer.Engine.Distributed;

/// <summary>
/// Rank 0's end of the broadcast to tensor-parallel ranks on other hosts, which cannot map its shared memory: the same
/// messages as <see cref="ShmBroadcastWriter"/>, as length-prefixed frames over one TCP connection per rank, as vLLM's
/// <c>MessageQueue</c> serves its remote readers over a socket. The ranks connect (<see cref="TcpBroadcastClient"/>),
/// each saying who it is; <see cref="WaitForReaders"/> waits for the expected ones; <see cref="Enqueue"/> sends each
/// message to all of them, in order. Each rank can talk back with short texts (<see cref="Reply"/>), and a connection's
/// end is reported at once (<see cref="Disconnected"/>), as a local worker process's exit is. One thread calls
/// <see cref="WaitForReaders"/> and <see cref="Enqueue"/>: a second calling at the same time gets
/// <see cref="InvalidOperationException"/>.
/// </summary>
/// <remarks>
/// Anything may connect to the port: a connection is only taken once its hello names this protocol and an expected rank
/// that is not connected yet, else it is told why and closed, and one that says nothing is dropped after
/// <see cref="HelloTimeout"/>. Neither holds up the others.
/// </remarks>
public sealed class TcpBroadcastServer : IDisposable
{
    /// <summary>How long a new connection may take to send its hello before it is dropped (a port scanner, a health check).</summary>
    private static readonly TimeSpan HelloTimeout = TimeSpan.FromSeconds(10);

    /// <summary>How long <see cref="Dispose"/> waits for the ranks to take the close and hang up: as long as the executor
    /// waits for a local worker process to exit.</summary>
    private static readonly TimeSpan CloseTimeout = TimeSpan.FromSeconds(10);

    /// <summary>How often a blocked send looks at the ranks' connections, the clock, cancellation and disposal.</summary>
    private const int CheckMicroseconds = 10_000;

    private static readonly TimeSpan CheckInterval = TimeSpan.FromMicroseconds(CheckMicroseconds);

    /// <summary>A message up to this size (with its header) is copied once into one buffer that every connection then
    /// sends with one call: a decode step's few KB go out as one segment per rank instead of a header and a body.</summary>
    internal const int StagingBytes = 64 << 10;

    private readonly Socket _listener;
    private readonly CancellationTokenSource _shutdown = new();
    private readonly CancellationToken _stopping;   // _shutdown's, kept: it stays usable (cancelled) after _shutdown is disposed
    private readonly TaskCompletionSource<IReadOnlySet<int>> _expected = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly object _lock = new();   // Monitor's: WaitForReaders waits on it for ranks to arrive
    private readonly Dictionary<int, Reader> _connected = [];   // by rank; a rank here is reserved, Ready once accepted
    private readonly byte[] _staging = new byte[StagingBytes];
    private readonly List<Socket> _blocked = [];
    private bool _groupClosed;   // WaitForReaders has returned or given up: no more ranks are taken
    private Reader[]? _readers;  // the group, once WaitForReaders returns
    private Exception? _brokenBy;
    private volatile bool _disposing;
    private CallGate _gate;

    private TcpBroadcastServer(Socket listener)
    {
        _listener = listener;
        _stopping = _shutdown.Token;
        LocalEndPoint = (IPEndPoint)listener.LocalEndPoint!;
        _ = AcceptAsync();
    }

    /// <summary>A rank sent a text (a worker's "ready", or its error before it exits): its rank and the text. Raised on the
    /// thread of the pool that reads that rank's connection, in order for one rank, possibly at the same time for
    /// different ranks. Attach before <see cref="WaitForReaders"/>: no rank is taken, so none can reply, before that. A
    /// handler that throws ends that rank's connection, with its exception as the reason; one that disposes the server
    /// holds up that rank's hang-up, so <see cref="Dispose"/> waits its full 10 s.</summary>
    public event Action<int, string>? Reply;

    /// <summary>A rank's connection ended (it hung up, its host stopped answering, or it broke the protocol): its rank and
    /// why. Raised once per rank, on a thread of the pool; not for the hang-ups <see cref="Dispose"/> asks for.</summary>
    public event Action<int, Exception>? Disconnected;

    /// <summary>The address and port the ranks connect to (the port chosen when <see cref="Listen"/> was given port 0).</summary>
    public IPEndPoint LocalEndPoint { get; }

    /// <summary>Listens on <paramref name="endpoint"/> (port 0: any free port) and takes connections in the background.</summary>
    public static TcpBroadcastServer Listen(IPEndPoint endpoint)
    {
        ArgumentNullException.ThrowIfNull(endpoint);
        var listener = new Socket(endpoint.AddressFamily, SocketType.Stream, ProtocolType.Tcp);
        try
        {
            if (endpoint.Address.Equals(IPAddress.IPv6Any))
            {
                // [::] takes IPv4 connections too, as 0.0.0.0 would: a node's address may be of either family.
                listener.DualMode = true;
            }

            listener.Bind(endpoint);
            listener.Listen();
        }
        catch (SocketException e)
        {
            listener.Dispose();
            throw new IOException($"Rank 0 cannot listen on {endpoint} for the tensor-parallel ranks of other hosts: {e.Message}", e);
        }

        return new TcpBroadcastServer(listener);
    }

    /// <summary>Waits until exactly <paramref name="ranks"/> have connected (each with its hello, and each told it was
    /// taken); from then on no other rank is taken. Call once.</summary>
    /// <exception cref="BroadcastTimeoutException">Some did not connect within <paramref name="timeout"/>; names them.</exception>
    /// <exception cref="BroadcastPeerDiedException">A rank that had connected lost its connection while the others were awaited.</exception>
    public void WaitForReaders(IReadOnlyCollection<int> ranks, TimeSpan timeout)
    {
        ArgumentNullException.ThrowIfNull(ranks);
        BroadcastWait.Validate(timeout);
        if (ranks.Count == 0 || ranks.Any(rank => rank < 1) || ranks.Distinct().Count() != ranks.Count)
        {
            throw new ArgumentException($"The ranks to wait for are distinct and from 1 (rank 0 is this side); got [{string.Join(", ", ranks)}].", nameof(ranks));
        }

        _gate.Enter(this);
        try
        {
            if (!_expected.TrySetResult(ranks.ToHashSet()))
            {
                throw new InvalidOperationException($"{nameof(WaitForReaders)} was called already; a group of ranks is awaited once.");
            }

            AwaitGroup(ranks, timeout);
        }
        finally
        {
            _gate.Exit();
        }
    }

    /// <summary>Sends <paramref name="message"/> to every rank as one frame. The connections are served in turn as their
    /// sockets take data, so a long message streams to all of them at once rather than to one after another.</summary>
    /// <param name="timeout">How long a rank may take no data at all (its socket's buffers full, its process not reading)
    /// before <see cref="BroadcastTimeoutException"/> names it; <see cref="Timeout.InfiniteTimeSpan"/>: no limit.</param>
    /// <exception cref="BroadcastPeerDiedException">A rank's connection is gone; <see cref="BroadcastPeerDiedException.Reader"/> is its rank.</exception>
    /// <remarks>A failure before any rank got a byte of the message leaves the queue as it was; one after leaves some
    /// ranks with part of it: the queue is broken, and every later call throws <see cref="InvalidOperationException"/>.</remarks>
    public void Enqueue(ReadOnlySpan<byte> message, TimeSpan timeout, CancellationToken cancellationToken = default)
    {
        BroadcastWait.Validate(timeout);
        if (message.Length > MaxMessageBytes)
        {
            throw new ArgumentException($"A broadcast message is at most {MaxMessageBytes} bytes (what a reader can hold in one array); this one is {message.Length}.", nameof(message));
        }

        _gate.Enter(this);
        try
        {
            if (_brokenBy is not null)
            {
                throw new InvalidOperationException($"The TCP broadcast is broken: an earlier message was cut off part-way ({_brokenBy.Message}).", _brokenBy);
            }

            Reader[] readers = _readers ?? throw new InvalidOperationException($"Call {nameof(WaitForReaders)} first: the ranks to send to are not known yet.");
            foreach (Reader reader in readers)
            {
                ThrowIfLost(reader);
            }

            Span<byte> header = stackalloc byte[HeaderBytes];
            WriteHeader(header, Kind.Message, message.Length);
            ReadOnlySpan<byte> head = header, body = message;
            if (HeaderBytes + message.Length <= StagingBytes)
            {
                header.CopyTo(_staging);
                message.CopyTo(_staging.AsSpan(HeaderBytes));
                head = _staging.AsSpan(0, HeaderBytes + message.Length);
                body = [];
            }

            StartFrame(readers);
            try
            {
                SendFrame(readers, head, body, timeout, cancellationToken);
            }
            catch (Exception e)
            {
                if (MarkTorn(readers, head.Length + body.Length))
                {
                    _brokenBy = e;
                }

                throw;
            }
        }
        finally
        {
            _gate.Exit();
        }
    }

    /// <summary>Sends every rank the close, after all that was sent, and hangs up once they have (or after
    /// <see cref="CloseTimeout"/>); an <see cref="Enqueue"/> or <see cref="WaitForReaders"/> waiting on another thread
    /// leaves first, with <see cref="ObjectDisposedException"/>. A rank left with part of a message gets no close: it sees
    /// the connection drop.</summary>
    public void Dispose()
    {
        if (!_gate.Close())
        {
            return;
        }

        _disposing = true;
        _shutdown.Cancel();
        _listener.Dispose();
        Reader[] accepted;
        lock (_lock)
        {
            _groupClosed = true;
            accepted = [.. _connected.Values.Where(reader => reader.Ready)];
        }

        long deadline = Stopwatch.GetTimestamp() + (long)(CloseTimeout.TotalSeconds * Stopwatch.Frequency);
        SendClose([.. accepted.Where(reader => !reader.Torn && reader.Lost is null)], deadline);
        foreach (Reader reader in accepted)
        {
            ShutDown(reader.Socket, SocketShutdown.Send);
        }

        // The ranks hang up once they have read the close. Closing first could reset the connection and throw away what
        // they have not read yet, if a reply were still arriving.
        lock (_lock)
        {
            while (accepted.Any(reader => reader.Lost is null) && Remaining(deadline) > TimeSpan.Zero)
            {
                Monitor.Wait(_lock, Remaining(deadline));
            }
        }

        foreach (Reader reader in accepted)
        {
            reader.Socket.Dispose();
        }

        _shutdown.Dispose();
    }

    private static TimeSpan Remaining(long deadline) => TimeSpan.FromSeconds(Math.Max(0, deadline - Stopwatch.GetTimestamp()) / (double)Stopwatch.Frequency);

    private static void ShutDown(Socket socket, SocketShutdown how)
    {
        try
        {
            socket.Shutdown(how);
        }
        catch (SocketException)
        {
            // Already reset by the peer.
        }
    }

    private static void StartFrame(Reader[] readers)
    {
        long now = Stopwatch.GetTimestamp();
        foreach (Reader reader in readers)
        {
            reader.Sent = 0;
            reader.LastProgress = now;
        }
    }

    /// <summary>Marks the ranks left with part of the frame (they get no close frame); true if any rank got any of it.</summary>
    private static bool MarkTorn(Reader[] readers, int frameBytes)
    {
        bool anySent = false;
        foreach (Reader reader in readers)
        {
            reader.Torn |= reader.Sent > 0 && reader.Sent < frameBytes;
            anySent |= reader.Sent > 0;
        }

        return anySent;
    }

    private static BroadcastPeerDiedException Died(Reader reader) => new(
        $"Rank {reader.Rank} ({reader.Remote}) is gone: {reader.Lost!.Message}", reader.Rank);

    private static void ThrowIfLost(Reader reader)
    {
        if (reader.Lost is not null)
        {
            throw Died(reader);
        }
    }

    private void AwaitGroup(IReadOnlyCollection<int> ranks, TimeSpan timeout)
    {
        var waited = Stopwatch.StartNew();
        lock (_lock)
        {
            try
            {
                while (true)
                {
                    ObjectDisposedException.ThrowIf(_gate.DisposeRequested, this);
                    if (_connected.Values.FirstOrDefault(reader => reader.Lost is not null) is { } lost)
                    {
                        throw Died(lost);
                    }

                    int[] missing = [.. ranks.Where(rank => !(_connected.TryGetValue(rank, out Reader? reader) && reader.Ready)).Order()];
                    if (missing.Length == 0)
                    {
                        _readers = [.. ranks.Order().Select(rank => _connected[rank])];
                        return;
                    }

                    TimeSpan left = timeout == Timeout.InfiniteTimeSpan ? TimeSpan.MaxValue : timeout - waited.Elapsed;
                    if (left <= TimeSpan.Zero)
                    {
                        throw new BroadcastTimeoutException(
                            $"Rank(s) {string.Join(", ", missing)} did not connect to rank 0 at {LocalEndPoint} within {timeout.TotalSeconds:F1} s.", missing);
                    }

                    // Woken by each rank taken or lost; the 10 ms cap notices a Dispose on another thread.
                    Monitor.Wait(_lock, left < CheckInterval ? left : CheckInterval);
                }
            }
            finally
            {
                _groupClosed = true;
            }
        }
    }

    private async Task AcceptAsync()
    {
        while (true)
        {
            Socket connection;
            try
            {
                connection = await _listener.AcceptAsync(_stopping);
            }
            catch (Exception) when (_stopping.IsCancellationRequested)
            {
                return;
            }
            catch (SocketException)
            {
                // Out of file descriptors, or a connection reset while queued: accept the next one after a pause rather
                // than stop taking ranks for good.
                await Task.Delay(CheckInterval * 10, CancellationToken.None);
                continue;
            }

            _ = HandshakeAsync(connection);
        }
    }

    /// <summary>Reads a new connection's hello and takes it as its rank or tells it why not. Owns the socket until the
    /// rank is Ready; never throws (a stray connection's failure is its own).</summary>
    private async Task HandshakeAsync(Socket socket)
    {
        string remote = socket.RemoteEndPoint?.ToString() ?? "an unknown address";
        Reader? taken = null;
        try
        {
            Configure(socket);
            byte[] hello = new byte[HelloBytes];
            using (var helloTimeout = CancellationTokenSource.CreateLinkedTokenSource(_stopping))
            {
                helloTimeout.CancelAfter(HelloTimeout);
                if (!await ReceiveExactlyAsync(socket, hello, helloTimeout.Token))
                {
                    return;   // connected and hung up: a port check
                }
            }

            (int? rank, string? refusal) = ReadHello(hello);
            if (rank is int r)
            {
                IReadOnlySet<int> expected = await _expected.Task.WaitAsync(_stopping);
                (taken, refusal) = Reserve(r, expected, socket, remote);
            }

            if (taken is null)
            {
                byte[] reason = EncodeText(refusal!, MaxReasonBytes, "refusal");
                byte[] refused = new byte[HeaderBytes + reason.Length];
                WriteHeader(refused, Kind.Refused, reason.Length);
                reason.CopyTo(refused, HeaderBytes);
                await socket.SendAsync(refused, SocketFlags.None, _stopping);
                socket.Shutdown(SocketShutdown.Send);
                return;
            }

            byte[] answer = new byte[HeaderBytes];
            WriteHeader(answer, Kind.Accepted, 0);
            await socket.SendAsync(answer, SocketFlags.None, _stopping);
            // From here the sends are Enqueue's, which never blocks its thread on one rank (see SendFrame).
            socket.Blocking = false;
            lock (_lock)
            {
                if (!_disposing)
                {
                    // On the pool: the loop may raise Reply before its first wait, which must not run under this lock.
                    _ = Task.Run(() => ReceiveRepliesAsync(taken), CancellationToken.None);
                    taken.Ready = true;
                    Monitor.PulseAll(_lock);
                }
            }
        }
        catch (Exception)
        {
            // Timed out, hung up, reset or cancelled by Dispose before it was taken: whatever it was, it is this
            // connection's alone, and dropping it is all there is to do.
        }
        finally
        {
            if (taken is not { Ready: true })
            {
                if (taken is not null)
                {
                    lock (_lock)
                    {
                        _connected.Remove(taken.Rank);
                    }
                }

                socket.Dispose();
            }
        }
    }

    /// <summary>Reserves <paramref name="rank"/> for this connection, or says why it cannot have it.</summary>
    private (Reader? Taken, string? Refusal) Reserve(int rank, IReadOnlySet<int> expected, Socket socket, string remote)
    {
        lock (_lock)
        {
            if (_groupClosed || _disposing)
            {
                return (null, $"rank 0 takes no more ranks: it {(_readers is null ? "stopped waiting for them" : "has its whole group")}.");
            }

            if (!expected.Contains(rank))
            {
                // A few ranks are listed; a big group is summed up, so the reason stays within a refusal's limit.
                string waitsFor = expected.Count <= 16 ? string.Join(", ", expected.Order()) : $"{expected.Count} ranks from {expected.Min()} to {expected.Max()}";
                return (null, $"rank {rank} is not one rank 0 waits for here (it waits for {waitsFor}).");
            }

            if (_connected.TryGetValue(rank, out Reader? holder))
            {
                return (null, $"rank {rank} is connected already, from {holder.Remote}.");
            }

            var reader = new Reader(rank, socket, remote);
            _connected.Add(rank, reader);
            return (reader, null);
        }
    }

    /// <summary>Reads a rank's replies until its connection ends, then records why and reports it. Never throws.</summary>
    private async Task ReceiveRepliesAsync(Reader reader)
    {
        Exception ending;
        try
        {
            string peer = $"rank {reader.Rank} ({reader.Remote})";
            byte[] header = new byte[HeaderBytes];
            while (await ReceiveExactlyAsync(reader.Socket, header, CancellationToken.None))
            {
                (_, int length) = ReadHeader(header, peer, [Kind.Reply]);
                byte[] text = new byte[length];
                if (!await ReceiveExactlyAsync(reader.Socket, text, CancellationToken.None) && length > 0)
                {
                    throw new EndOfStreamException($"The connection ended before the {length} bytes of a reply.");
                }

                // Decoded before the handler is looked up: text that is not UTF-8 breaks the protocol whether or not anyone listens.
                string reply = DecodeText(text, peer);
                Reply?.Invoke(reader.Rank, reply);
            }

            ending = new EndOfStreamException("it closed its connection.");
        }
        catch (Exception e)
        {
            // The socket's errors say what happened to the connection; anything else (a corrupt frame, a Reply handler's
            // exception) is why this side ends it.
            ending = e;
            ShutDown(reader.Socket, SocketShutdown.Both);
        }

        lock (_lock)
        {
            reader.Lost = ending;
            Monitor.PulseAll(_lock);
        }

        if (!_disposing)
        {
            Disconnected?.Invoke(reader.Rank, ending);
        }
    }

    /// <summary>Sends the frame <paramref name="head"/> + <paramref name="body"/> to every reader from where each is
    /// (<see cref="Reader.Sent"/>), one non-blocking send per rank in turn, waiting for a socket to take data only when
    /// none did.</summary>
    private void SendFrame(Reader[] readers, ReadOnlySpan<byte> head, ReadOnlySpan<byte> body, TimeSpan timeout, CancellationToken cancellationToken)
    {
        int frameBytes = head.Length + body.Length;
        while (true)
        {
            bool progressed = false, done = true;
            foreach (Reader reader in readers)
            {
                if (reader.Sent == frameBytes)
                {
                    continue;
                }

                ReadOnlySpan<byte> rest = reader.Sent < head.Length ? head[reader.Sent..] : body[(reader.Sent - head.Length)..];
                int sent = reader.Socket.Send(rest, SocketFlags.None, out SocketError error);
                if (error is not (SocketError.Success or SocketError.WouldBlock))
                {
                    throw new BroadcastPeerDiedException(
                        $"Rank {reader.Rank} ({reader.Remote}) is gone: sending to it failed ({error}) after {reader.Sent} of the message's {frameBytes} bytes.", reader.Rank);
                }

                if (sent > 0)
                {
                    reader.Sent += sent;
                    reader.LastProgress = Stopwatch.GetTimestamp();
                    progressed = true;
                }

                done &= reader.Sent == frameBytes;
            }

            if (done)
            {
                return;
            }

            if (!progressed)
            {
                WaitUntilWritable(readers, frameBytes, timeout, cancellationToken);
            }
        }
    }

    /// <summary>Waits up to 10 ms for a rank still owed bytes to have room in its socket, after checking that none is
    /// lost or stuck and that the call is still wanted. Allocates nothing unless it throws: a busy step waits here too.</summary>
    private void WaitUntilWritable(Reader[] readers, int frameBytes, TimeSpan timeout, CancellationToken cancellationToken)
    {
        cancellationToken.ThrowIfCancellationRequested();
        // Dispose's own close frame is sent after it set _disposing, and must not stop itself.
        ObjectDisposedException.ThrowIf(_gate.DisposeRequested && !_disposing, this);
        long now = Stopwatch.GetTimestamp();
        double timeoutTicks = timeout == Timeout.InfiniteTimeSpan ? double.PositiveInfinity : timeout.TotalSeconds * Stopwatch.Frequency;
        long oldestProgress = long.MaxValue;
        bool stuck = false;
        _blocked.Clear();
        foreach (Reader reader in readers)
        {
            if (reader.Sent < frameBytes)
            {
                ThrowIfLost(reader);
                _blocked.Add(reader.Socket);
                oldestProgress = Math.Min(oldestProgress, reader.LastProgress);
                stuck |= now - reader.LastProgress >= timeoutTicks;
            }
        }

        if (stuck)
        {
            int[] ranks = [.. readers.Where(reader => reader.Sent < frameBytes && now - reader.LastProgress >= timeoutTicks).Select(reader => reader.Rank)];
            Reader first = readers.First(reader => reader.Rank == ranks[0]);
            throw new BroadcastTimeoutException(
                $"Rank(s) {string.Join(", ", ranks)} took none of the message for {timeout.TotalMilliseconds:F0} ms " +
                $"(rank {first.Rank} has {first.Sent} of its {frameBytes} bytes): not reading, or the network is stalled.", ranks);
        }

        double untilTimeout = (oldestProgress + timeoutTicks - now) * 1e6 / Stopwatch.Frequency;
        Socket.Select(null, _blocked, null, (int)Math.Clamp(untilTimeout, 0, CheckMicroseconds));
    }

    /// <summary>Sends the close frame to <paramref name="readers"/>, skipping those found gone, until
    /// <paramref name="deadline"/>.</summary>
    private void SendClose(Reader[] readers, long deadline)
    {
        Span<byte> close = stackalloc byte[HeaderBytes];
        WriteHeader(close, Kind.Close, 0);
        StartFrame(readers);
        while (readers.Length > 0)
        {
            try
            {
                SendFrame(readers, close, [], Remaining(deadline), CancellationToken.None);
                return;
            }
            catch (BroadcastPeerDiedException e)
            {
                readers = [.. readers.Where(reader => reader.Rank != e.Reader)];
            }
            catch (BroadcastTimeoutException)
            {
                return;   // the ranks still without it will see the connection drop
            }
        }
    }

    /// <summary>One rank's connection. Its socket is the server's once <see cref="Ready"/>.</summary>
    private sealed class Reader(int rank, Socket socket, string remote)
    {
        public int Rank { get; } = rank;

        public Socket Socket { get; } = socket;

        public string Remote { get; } = remote;

        /// <summary>Its acceptance was sent and its replies are being read: it belongs to the group (under the lock).</summary>
        public bool Ready { get; set; }

        /// <summary>Why its connection ended, once it has.</summary>
        public Exception? Lost { get => Volatile.Read(ref field); set => Volatile.Write(ref field, value); }

        // The sending thread's: bytes of the current frame sent, when it last took any, and whether it was left with part of one.
        public int Sent { get; set; }

        public long LastProgress { get; set; }

        public bool Torn { get; set; }
    }
}
