using System.Net;
using System.Net.Sockets;
using static Celer.Engine.Distributed.TcpCollectivesFrames;

namespace Celer.Engine.Distributed;

/// <summary>
/// Rank 0's listener of a <see cref="TcpCollectives"/> group: accepts connections in the background for as long as the
/// group lives, reads each one's hello on its own, and takes ranks 1 to size − 1 once each. Anything else (a stray
/// connection, garbage, another group's rank, a rank that already joined) is answered with the reason, closed and
/// remembered, so a group that does not fill up can say what came instead; none of it disturbs the ranks that joined.
/// </summary>
internal sealed class TcpRankAcceptor : IDisposable
{
    /// <summary>A joining rank sends its hello as soon as it connects; a connection silent this long is not a rank.</summary>
    private static readonly TimeSpan HelloTimeout = TimeSpan.FromSeconds(10);

    /// <summary>The refusals an error message quotes: the latest few, so a port scanner cannot grow the list.</summary>
    private const int RefusalsKept = 8;

    private readonly Socket _listener;
    private readonly int _size;
    private readonly Lock _lock = new();
    private readonly TcpLink?[] _links;
    private readonly string?[] _claimedBy;
    private readonly Queue<string> _refusals = new();
    private readonly CancellationTokenSource _stop = new();
    private readonly ManualResetEventSlim _allJoined = new();
    private int _joined;
    private bool _closed;

    private TcpRankAcceptor(Socket listener, int size)
    {
        _listener = listener;
        _size = size;
        _links = new TcpLink?[size];
        _claimedBy = new string?[size];
        LocalEndPoint = (IPEndPoint)listener.LocalEndPoint!;
        if (size == 1)
        {
            _allJoined.Set();
        }
    }

    public IPEndPoint LocalEndPoint { get; }

    /// <summary>Binds and listens on <paramref name="listen"/> and accepts in the background from now on.</summary>
    public static TcpRankAcceptor Start(IPEndPoint listen, int size)
    {
        var listener = new Socket(listen.AddressFamily, SocketType.Stream, ProtocolType.Tcp);
        try
        {
            // Accepted sockets inherit these, and the receive buffer must be set before the handshake to widen the window.
            TcpCollectives.Tune(listener);
            listener.Bind(listen);
            listener.Listen(Math.Max(16, size));
        }
        catch (SocketException e)
        {
            listener.Dispose();
            throw new IOException($"Rank 0 of a collective group could not listen on {listen}: {e.Message}", e);
        }

        var acceptor = new TcpRankAcceptor(listener, size);
        _ = Task.Run(acceptor.AcceptAsync);
        return acceptor;
    }

    /// <summary>Waits up to <paramref name="timeout"/> (at most) for every rank to have joined.</summary>
    public bool WaitForAll(TimeSpan timeout) => _allJoined.Wait(timeout);

    /// <summary>Every rank's connection, by rank (none for rank 0), once <see cref="WaitForAll"/> said they are in.</summary>
    public TcpLink[] Links()
    {
        lock (_lock)
        {
            return [.. _links.Skip(1).Select(link => link!)];
        }
    }

    /// <summary>The ranks that have not joined, lowest first.</summary>
    public int[] Missing()
    {
        lock (_lock)
        {
            return [.. Enumerable.Range(1, _size - 1).Where(rank => _links[rank] is null)];
        }
    }

    /// <summary>The connections turned away lately, for an error message ("" when none).</summary>
    public string Refusals()
    {
        lock (_lock)
        {
            return _refusals.Count == 0 ? "" : $"; turned away meanwhile: {string.Join("; ", _refusals)}";
        }
    }

    /// <summary>Stops accepting (connections still in their handshake are closed) and returns the ranks' connections that
    /// had joined, which are the caller's to close.</summary>
    public TcpLink[] Close()
    {
        lock (_lock)
        {
            if (!_closed)
            {
                _closed = true;
                _stop.Cancel();
                _listener.Dispose();
            }

            return [.. _links.OfType<TcpLink>()];
        }
    }

    /// <summary>Stops accepting; the connections of ranks that joined stay open (<see cref="Close"/> hands them over).</summary>
    public void Dispose()
    {
        Close();
        _stop.Dispose();
        _allJoined.Dispose();
    }

    private async Task AcceptAsync()
    {
        while (true)
        {
            Socket connection;
            try
            {
                connection = await _listener.AcceptAsync(_stop.Token);
            }
            catch (Exception e) when (e is OperationCanceledException or ObjectDisposedException || _stop.IsCancellationRequested)
            {
                return;
            }
            catch (SocketException e)
            {
                // Out of file descriptors, a connection reset while queued: the listener itself is fine, so keep going.
                Refused("a connection", $"accepting it failed: {e.Message}");
                await Task.Delay(100);
                continue;
            }

            _ = HelloAsync(connection);
        }
    }

    /// <summary>Reads a connection's hello and takes or refuses the rank. Never throws: a bad connection is its own problem.</summary>
    private async Task HelloAsync(Socket connection)
    {
        string remote = connection.RemoteEndPoint?.ToString() ?? "an unknown address";
        int claimed = 0;
        try
        {
            using var patience = CancellationTokenSource.CreateLinkedTokenSource(_stop.Token);
            patience.CancelAfter(HelloTimeout);
            byte[] hello = new byte[HelloBytes];
            int read = 0;
            while (read < HelloBytes)
            {
                int received = await connection.ReceiveAsync(hello.AsMemory(read), SocketFlags.None, patience.Token);
                if (received == 0)
                {
                    Refused(remote, $"it closed the connection after {read} of the hello's {HelloBytes} bytes");
                    connection.Dispose();
                    return;
                }

                read += received;
                if (read >= 8 && read - received < 8 && !StartsWithMagic(hello))
                {
                    break;   // not a rank: answer now rather than wait for bytes a scanner will never send
                }
            }

            string? refusal = CheckHello(hello, _size, out int rank) ?? Claim(rank, remote);
            if (refusal is not null)
            {
                Refused(remote, refusal);
                await connection.SendAsync(Answer(refusal), SocketFlags.None, patience.Token);
                HangUp(connection);
                return;
            }

            claimed = rank;
            await connection.SendAsync(Answer(null), SocketFlags.None, patience.Token);
            Register(rank, connection, remote);
        }
        catch (Exception e) when (e is SocketException or OperationCanceledException or ObjectDisposedException)
        {
            if (!_stop.IsCancellationRequested)
            {
                Refused(remote, e is OperationCanceledException ? $"it sent no whole hello within {HelloTimeout.TotalSeconds:F0} s" : e.Message);
            }

            Unclaim(claimed);
            connection.Dispose();
        }
    }

    /// <summary>Closes a refused connection so that its answer arrives: closing with unread bytes (the rest of a stray
    /// client's request) would make the kernel reset the connection and drop the answer.</summary>
    private static void HangUp(Socket connection)
    {
        connection.Shutdown(SocketShutdown.Send);
        byte[] discard = new byte[4096];
        while (connection.Available > 0 && connection.Receive(discard) > 0)
        {
        }

        connection.Dispose();
    }

    private string? Claim(int rank, string remote)
    {
        lock (_lock)
        {
            if (_closed)
            {
                return "the group has closed";
            }

            if (_claimedBy[rank] is { } holder)
            {
                return $"rank {rank} already joined (from {holder})";
            }

            _claimedBy[rank] = remote;
            return null;
        }
    }

    private void Unclaim(int rank)
    {
        lock (_lock)
        {
            if (rank > 0 && _links[rank] is null)
            {
                _claimedBy[rank] = null;
            }
        }
    }

    private void Register(int rank, Socket connection, string remote)
    {
        lock (_lock)
        {
            if (_closed)
            {
                connection.Dispose();
                return;
            }

            _links[rank] = new TcpLink(connection, rank, remote);
            if (++_joined == _size - 1)
            {
                _allJoined.Set();
            }
        }
    }

    private void Refused(string remote, string reason)
    {
        lock (_lock)
        {
            if (_refusals.Count == RefusalsKept)
            {
                _refusals.Dequeue();
            }

            _refusals.Enqueue($"{remote}: {reason}");
        }
    }
}
