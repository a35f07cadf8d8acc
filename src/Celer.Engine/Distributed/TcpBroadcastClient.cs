using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Runtime.ExceptionServices;
using static Celer.Engine.Distributed.TcpBroadcastFrames;

namespace Celer.Engine.Distributed;

/// <summary>
/// A tensor-parallel rank's end of rank 0's broadcast when it runs on another host (see <see cref="TcpBroadcastServer"/>):
/// <see cref="Dequeue"/> reads every message rank 0 sends, in order, exactly once, as <see cref="ShmBroadcastReader"/>
/// does on rank 0's host, and <see cref="Reply"/> talks back. One thread reads: a second calling at the same time gets
/// <see cref="InvalidOperationException"/>; replies may come from any thread.
/// </summary>
/// <remarks>
/// Everything that arrives is checked before it is believed: a frame's kind and padding, and its length against the
/// protocol's limit. A message's array is allocated whole up to <see cref="TrustedMessageBytes"/> and grows as the bytes
/// arrive beyond that, so a corrupt header claiming gigabytes costs at most twice what the peer really sent.
/// </remarks>
public sealed class TcpBroadcastClient : IDisposable
{
    /// <summary>A message up to this size is received into an array of its final length at once; a longer one's array
    /// grows (doubling, the last step exact) as its bytes arrive: an honest long message costs a few copies, a lying
    /// header no more memory than the bytes behind it.</summary>
    internal const int TrustedMessageBytes = 64 << 20;

    /// <summary>What is read from the socket per call when a frame's rest is short: headers and small messages come in
    /// together, in one call, instead of one call each.</summary>
    internal const int ReadAheadBytes = 64 << 10;

    /// <summary>How often a wait for rank 0 looks at the clock, cancellation and disposal.</summary>
    private const int CheckMicroseconds = 10_000;

    /// <summary>Between attempts to reach a rank 0 that is not listening yet.</summary>
    private static readonly TimeSpan RetryPause = TimeSpan.FromMilliseconds(200);

    /// <summary>How long a reply may wait for room in the socket: rank 0 reads replies as they come, so only a stalled
    /// network fills it, which TCP_USER_TIMEOUT ends in about as long.</summary>
    private static readonly TimeSpan ReplyTimeout = TimeSpan.FromSeconds(30);

    private readonly Socket _socket;
    private readonly Lock _sendLock = new();
    private readonly byte[] _readAhead = new byte[ReadAheadBytes];
    private int _readStart, _readEnd;
    private byte[]? _message;      // the message being received, once its header is in
    private int _messageBytes, _received;
    private ExceptionDispatchInfo? _ended;
    private bool _socketClosed;    // under _sendLock
    private Exception? _replyFailed;
    private CallGate _gate;

    private TcpBroadcastClient(Socket socket, int rank, string server)
    {
        _socket = socket;
        Rank = rank;
        Server = server;
    }

    /// <summary>The rank this end joined as.</summary>
    public int Rank { get; }

    /// <summary>Rank 0's address, as given to <see cref="Connect"/>.</summary>
    public string Server { get; }

    /// <summary>Joins rank 0 at <paramref name="host"/>:<paramref name="port"/> as <paramref name="rank"/>: connects,
    /// trying again until <paramref name="timeout"/> while nothing listens there yet (rank 0 may start later), says which
    /// rank it is and waits to be taken.</summary>
    /// <exception cref="InvalidOperationException">Rank 0 refused this rank; the message gives its reason.</exception>
    /// <exception cref="InvalidDataException">Something that is not a Celer rank 0 answered.</exception>
    /// <exception cref="BroadcastTimeoutException">Rank 0 was not reached, or did not take the rank, in time.</exception>
    public static TcpBroadcastClient Connect(string host, int port, int rank, TimeSpan timeout)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(host);
        ArgumentOutOfRangeException.ThrowIfLessThan(port, IPEndPoint.MinPort + 1);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(port, IPEndPoint.MaxPort);
        ArgumentOutOfRangeException.ThrowIfLessThan(rank, 1);
        BroadcastWait.Validate(timeout);
        long deadline = Deadline(timeout);
        string server = host.Contains(':', StringComparison.Ordinal) ? $"[{host}]:{port}" : $"{host}:{port}";
        string lastError = "no connection attempt finished in time";
        while (true)
        {
            Socket? socket = TryConnect(host, port, deadline, ref lastError);
            if (socket is not null)
            {
                try
                {
                    if (Handshake(socket, rank, server, deadline, ref lastError))
                    {
                        return new TcpBroadcastClient(socket, rank, server);
                    }
                }
                catch
                {
                    socket.Dispose();
                    throw;
                }

                socket.Dispose();
            }

            TimeSpan left = Remaining(deadline);
            if (left <= TimeSpan.Zero)
            {
                throw new BroadcastTimeoutException(
                    $"Rank {rank} could not join rank 0 at {server} within {timeout.TotalSeconds:F1} s: {lastError}", []);
            }

            Thread.Sleep(left < RetryPause ? left : RetryPause);
        }
    }

    /// <summary>Reads the next message into a new array.</summary>
    /// <param name="timeout">How long to wait for rank 0 to send anything more (<see cref="Timeout.InfiniteTimeSpan"/>:
    /// no limit, the usual case for a worker waiting on an idle engine); past it, <see cref="BroadcastTimeoutException"/>.
    /// A timeout, cancellation or <c>Dispose</c> part-way through a message loses nothing: the next call goes on with it.</param>
    /// <exception cref="BroadcastQueueClosedException">Rank 0 closed the queue and everything it sent has been read.</exception>
    /// <exception cref="BroadcastPeerDiedException">The connection ended without the close (rank 0 or its host died).</exception>
    /// <exception cref="InvalidDataException">Rank 0's end sent something that breaks the protocol.</exception>
    /// <remarks>The last three are final: every later call throws the same.</remarks>
    public byte[] Dequeue(TimeSpan timeout, CancellationToken cancellationToken = default)
    {
        BroadcastWait.Validate(timeout);
        _gate.Enter(this);
        try
        {
            _ended?.Throw();
            try
            {
                return ReadMessage(timeout, cancellationToken);
            }
            catch (Exception e) when (e is BroadcastQueueClosedException or BroadcastPeerDiedException or InvalidDataException)
            {
                _ended = ExceptionDispatchInfo.Capture(e);
                // Nothing more can come: hang up now, so rank 0's Dispose need not wait for this end's.
                CloseSocket();
                throw;
            }
        }
        finally
        {
            _gate.Exit();
        }
    }

    /// <summary>Sends <paramref name="text"/> to rank 0 (its <see cref="TcpBroadcastServer.Reply"/>), at most
    /// <see cref="TcpBroadcastFrames.MaxReplyBytes"/> bytes of UTF-8.</summary>
    /// <exception cref="BroadcastQueueClosedException">The connection is closed (rank 0 closed the queue, or it was lost).</exception>
    /// <exception cref="BroadcastPeerDiedException">The connection failed while sending.</exception>
    /// <exception cref="BroadcastTimeoutException">Rank 0 took none of it in 30 s; the connection can no longer carry replies.</exception>
    public void Reply(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        byte[] payload = EncodeText(text, MaxReplyBytes, "reply");
        byte[] frame = new byte[HeaderBytes + payload.Length];
        WriteHeader(frame, Kind.Reply, payload.Length);
        payload.CopyTo(frame, HeaderBytes);
        lock (_sendLock)
        {
            ObjectDisposedException.ThrowIf(_gate.DisposeRequested, this);
            if (_socketClosed)
            {
                throw new BroadcastQueueClosedException($"Rank {Rank}'s connection to rank 0 at {Server} is closed; the reply was not sent.");
            }

            if (_replyFailed is not null)
            {
                throw new InvalidOperationException($"An earlier reply to rank 0 at {Server} failed part-way ({_replyFailed.Message}); no more can be sent.", _replyFailed);
            }

            try
            {
                // Blocking, bounded by the socket's send timeout: a reply is rare and short.
                _socket.Send(frame);
            }
            catch (SocketException e)
            {
                _replyFailed = e.SocketErrorCode == SocketError.TimedOut
                    ? new BroadcastTimeoutException($"Rank 0 at {Server} took none of rank {Rank}'s reply for {ReplyTimeout.TotalSeconds:F0} s.", [])
                    : new BroadcastPeerDiedException($"Rank {Rank}'s connection to rank 0 at {Server} failed while replying ({e.SocketErrorCode}).", reader: null);
                throw _replyFailed;
            }
        }
    }

    /// <summary>Hangs up; a <see cref="Dequeue"/> waiting on another thread leaves first, with
    /// <see cref="ObjectDisposedException"/>.</summary>
    public void Dispose()
    {
        if (_gate.Close())
        {
            CloseSocket();
        }
    }

    private static long Deadline(TimeSpan timeout)
    {
        long now = Stopwatch.GetTimestamp();
        double ticks = timeout.TotalSeconds * Stopwatch.Frequency;
        return timeout == Timeout.InfiniteTimeSpan || ticks >= long.MaxValue - now ? long.MaxValue : now + (long)ticks;
    }

    private static TimeSpan Remaining(long deadline) => deadline == long.MaxValue
        ? Timeout.InfiniteTimeSpan
        : TimeSpan.FromSeconds(Math.Max(0, deadline - Stopwatch.GetTimestamp()) / (double)Stopwatch.Frequency);

    /// <summary>A connected socket to any of <paramref name="host"/>'s addresses, or null with the reason in
    /// <paramref name="lastError"/> (nothing listening yet, the name not resolving yet, a timeout). An attempt cut short
    /// by the deadline keeps the reason of the one before, which says more than "cancelled".</summary>
    private static Socket? TryConnect(string host, int port, long deadline, ref string lastError)
    {
        using var attempt = new CancellationTokenSource(Remaining(deadline));
        IPAddress[] addresses;
        try
        {
            // An address needs no resolver (and no resolver's failure).
            addresses = IPAddress.TryParse(host, out IPAddress? literal) ? [literal] : Dns.GetHostAddressesAsync(host, attempt.Token).GetAwaiter().GetResult();
        }
        catch (SocketException e)
        {
            lastError = $"'{host}' did not resolve: {e.Message}";
            return null;
        }
        catch (OperationCanceledException)
        {
            return null;
        }

        if (addresses.Length == 0)
        {
            lastError = $"'{host}' resolved to no address.";
        }

        foreach (IPAddress address in addresses)
        {
            var socket = new Socket(address.AddressFamily, SocketType.Stream, ProtocolType.Tcp);
            try
            {
                socket.ConnectAsync(new IPEndPoint(address, port), attempt.Token).AsTask().GetAwaiter().GetResult();
                return socket;
            }
            catch (SocketException e)
            {
                lastError = $"connecting to {address}:{port} failed: {e.Message}";
                socket.Dispose();
            }
            catch (OperationCanceledException)
            {
                socket.Dispose();
                return null;
            }
        }

        return null;
    }

    /// <summary>Sends the hello and reads rank 0's answer: true when taken, false to try again (the connection ended or
    /// timed out first); a refusal or an answer that is not Celer's throws.</summary>
    private static bool Handshake(Socket socket, int rank, string server, long deadline, ref string lastError)
    {
        Configure(socket);
        // The socket's own timeouts bound the handshake's blocking calls by the time left (0 would mean no limit).
        int leftMilliseconds = deadline == long.MaxValue ? 0 : Math.Max(1, (int)Math.Min(int.MaxValue, Remaining(deadline).TotalMilliseconds));
        socket.SendTimeout = socket.ReceiveTimeout = leftMilliseconds;
        string peer = $"rank 0 at {server}";
        try
        {
            Span<byte> hello = stackalloc byte[HelloBytes];
            WriteHello(hello, rank);
            socket.Send(hello);
            Span<byte> header = stackalloc byte[HeaderBytes];
            if (!ReceiveExactly(socket, header))
            {
                lastError = $"{peer} hung up before answering rank {rank}'s hello.";
                return false;
            }

            (Kind kind, int reasonBytes) = ReadHeader(header, peer, [Kind.Accepted, Kind.Refused]);
            if (kind == Kind.Refused)
            {
                byte[] reason = new byte[reasonBytes];
                ReceiveExactly(socket, reason);
                throw new InvalidOperationException($"Rank 0 at {server} refused rank {rank}: {DecodeText(reason, peer)}");
            }
        }
        catch (SocketException e) when (e.SocketErrorCode == SocketError.TimedOut)
        {
            lastError = $"{peer} took the connection but did not answer rank {rank}'s hello (it answers once it knows which ranks to wait for).";
            return false;
        }
        catch (Exception e) when (e is SocketException or EndOfStreamException)
        {
            lastError = $"the connection to {peer} failed during the hello: {e.Message}";
            return false;
        }

        socket.ReceiveTimeout = 0;   // Dequeue waits by polling, with its own timeout
        socket.SendTimeout = (int)ReplyTimeout.TotalMilliseconds;
        return true;
    }

    /// <summary>Blocking receive of exactly <paramref name="buffer"/>'s length; false on a hang-up before its first byte.</summary>
    private static bool ReceiveExactly(Socket socket, Span<byte> buffer)
    {
        int received = 0;
        while (received < buffer.Length)
        {
            int n = socket.Receive(buffer[received..]);
            if (n == 0)
            {
                return received == 0 ? false : throw new EndOfStreamException($"The connection ended {received} bytes into a {buffer.Length}-byte read.");
            }

            received += n;
        }

        return true;
    }

    private byte[] ReadMessage(TimeSpan timeout, CancellationToken cancellationToken)
    {
        if (_message is null)
        {
            while (_readEnd - _readStart < HeaderBytes)
            {
                ReadAhead(timeout, cancellationToken);
            }

            (Kind kind, int length) = ReadHeader(_readAhead.AsSpan(_readStart, HeaderBytes), $"rank 0 at {Server}", [Kind.Message, Kind.Close]);
            _readStart += HeaderBytes;
            if (kind == Kind.Close)
            {
                throw new BroadcastQueueClosedException($"Rank 0 at {Server} closed the broadcast; rank {Rank} has read everything it sent.");
            }

            _message = length == 0 ? [] : GC.AllocateUninitializedArray<byte>(Math.Min(length, TrustedMessageBytes));
            _messageBytes = length;
            _received = 0;
        }

        while (_received < _messageBytes)
        {
            int room = Room();
            if (_readStart < _readEnd)
            {
                int n = Math.Min(_readEnd - _readStart, room);
                _readAhead.AsSpan(_readStart, n).CopyTo(_message.AsSpan(_received));
                _readStart += n;
                _received += n;
            }
            else if (_messageBytes - _received >= ReadAheadBytes)
            {
                // A long rest goes straight into the message, with no copy through the read-ahead buffer.
                _received += Receive(_message.AsSpan(_received, room), timeout, cancellationToken);
            }
            else
            {
                ReadAhead(timeout, cancellationToken);
            }
        }

        byte[] message = _message;
        _message = null;
        return message;
    }

    /// <summary>Room in the message's array for more of it, growing the array when it is full and the message longer.</summary>
    private int Room()
    {
        if (_received == _message!.Length)
        {
            byte[] grown = GC.AllocateUninitializedArray<byte>((int)Math.Min(_messageBytes, 2L * _message.Length));
            _message.CopyTo(grown, 0);
            _message = grown;
        }

        return _message.Length - _received;
    }

    /// <summary>Receives more into the read-ahead buffer, moving what is left of it to the front first.</summary>
    private void ReadAhead(TimeSpan timeout, CancellationToken cancellationToken)
    {
        if (_readStart > 0)
        {
            _readAhead.AsSpan(_readStart, _readEnd - _readStart).CopyTo(_readAhead);
            _readEnd -= _readStart;
            _readStart = 0;
        }

        _readEnd += Receive(_readAhead.AsSpan(_readEnd), timeout, cancellationToken);
    }

    /// <summary>Receives at least one byte, waiting for it in 10 ms polls up to <paramref name="timeout"/>.</summary>
    private int Receive(Span<byte> into, TimeSpan timeout, CancellationToken cancellationToken)
    {
        long deadline = Deadline(timeout);
        bool midMessage = _message is not null || _readEnd > _readStart;
        while (true)
        {
            long left = deadline - Stopwatch.GetTimestamp();
            int microseconds = (int)Math.Clamp(left * 1e6 / Stopwatch.Frequency, 0, CheckMicroseconds);
            if (_socket.Poll(microseconds, SelectMode.SelectRead))
            {
                break;
            }

            cancellationToken.ThrowIfCancellationRequested();
            ObjectDisposedException.ThrowIf(_gate.DisposeRequested, this);
            if (Stopwatch.GetTimestamp() >= deadline)
            {
                throw new BroadcastTimeoutException(
                    $"Rank {Rank} waited {timeout.TotalMilliseconds:F0} ms for {(midMessage ? "the rest of a message" : "the next message")} from rank 0 at {Server}.", []);
            }
        }

        int received = _socket.Receive(into, SocketFlags.None, out SocketError error);
        string where = midMessage ? " in the middle of a message" : "";
        if (error != SocketError.Success)
        {
            throw new BroadcastPeerDiedException($"Rank {Rank}'s connection to rank 0 at {Server} failed{where} ({error}): rank 0 or its host is gone.", reader: null);
        }

        if (received == 0)
        {
            throw new BroadcastPeerDiedException($"Rank 0 at {Server} hung up{where} without closing the broadcast: it died or was killed.", reader: null);
        }

        return received;
    }

    private void CloseSocket()
    {
        lock (_sendLock)
        {
            if (!_socketClosed)
            {
                _socketClosed = true;
                _socket.Dispose();
            }
        }
    }
}
