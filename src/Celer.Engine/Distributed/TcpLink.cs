using System.Net.Sockets;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using static Celer.Engine.Distributed.TcpCollectivesFrames;

namespace Celer.Engine.Distributed;

/// <summary>
/// One connection of a <see cref="TcpCollectives"/> group (rank 0 to another rank), non-blocking: the frame it is sending
/// and the frame it is receiving, each moved as far as the socket allows per call, so one thread can move the frames of
/// every connection at once and still look at the clock and at <c>Dispose</c> between waits. A frame's floats go
/// straight from and into the tensors (or rank 0's reused buffers): nothing is allocated per frame.
/// </summary>
internal sealed unsafe class TcpLink
{
    private readonly byte[] _sendHeader = new byte[HeaderBytes];
    private readonly byte[] _receiveHeader = new byte[HeaderBytes];
    // Pinned, as a tensor is, so a leave frame's reason is received through the same pointer path as floats.
    private readonly byte[] _reason = GC.AllocateArray<byte>(MaxReasonBytes, pinned: true);
    private byte* _sendPayload;
    private long _sendBytes, _sent;
    private byte* _receivePayload;
    private long _receiveBytes, _received;
    private bool _receiving, _headerArrived;

    /// <summary>What <see cref="Receive"/> returns when the other end closed the connection.</summary>
    public const SocketError EndOfStream = SocketError.Shutdown;

    public TcpLink(Socket socket, int rank, string remote)
    {
        Socket = socket;
        Rank = rank;
        Remote = remote;
        socket.Blocking = false;
    }

    public Socket Socket { get; }

    /// <summary>The rank at the other end.</summary>
    public int Rank { get; }

    /// <summary>The other end's address, for messages.</summary>
    public string Remote { get; }

    public bool Sending => _sent < _sendBytes;

    /// <summary>Part of a frame is out: nothing else (a leave frame) may be sent on this connection.</summary>
    public bool MidSend => _sent > 0 && _sent < _sendBytes;

    public bool Receiving => _receiving;

    /// <summary>A frame's header is in and waits for <see cref="ReceivePayload"/> to say where its payload goes.</summary>
    public bool HeaderArrived => _headerArrived;

    public ReadOnlySpan<byte> Header => _receiveHeader;

    /// <summary>The reason a leave frame carried, once its <paramref name="bytes"/> are in.</summary>
    public string Reason(int bytes) => System.Text.Encoding.UTF8.GetString(_reason, 0, bytes);

    public byte* ReasonBuffer => (byte*)Unsafe.AsPointer(ref MemoryMarshal.GetArrayDataReference(_reason));

    public void PostSend(int kind, long sequence, int rows, int columns, byte* payload, long bytes)
    {
        WriteHeader(_sendHeader, kind, sequence, rows, columns);
        _sendPayload = payload;
        _sendBytes = HeaderBytes + bytes;
        _sent = 0;
    }

    /// <summary>Gives up the frame being sent: the connection failed under it.</summary>
    public void AbandonSend() => _sendBytes = _sent = 0;

    /// <summary>Expects the next frame: its header first (<see cref="HeaderArrived"/>), then the payload.</summary>
    public void PostReceive()
    {
        _receivePayload = null;
        _receiveBytes = HeaderBytes;
        _received = 0;
        _receiving = true;
        _headerArrived = false;
    }

    /// <summary>Where the payload of the frame whose header arrived goes, and how long it is.</summary>
    public void ReceivePayload(byte* target, long bytes)
    {
        _headerArrived = false;
        _receivePayload = target;
        _receiveBytes = HeaderBytes + bytes;
        _receiving = bytes > 0;
    }

    /// <summary>Sends what the socket takes now; <paramref name="moved"/> says how much. Anything but
    /// <see cref="SocketError.Success"/> means the connection is gone.</summary>
    public SocketError Send(out long moved)
    {
        moved = 0;
        while (_sent < _sendBytes)
        {
            ReadOnlySpan<byte> from = _sent < HeaderBytes
                ? _sendHeader.AsSpan((int)_sent)
                : new ReadOnlySpan<byte>(_sendPayload + (_sent - HeaderBytes), (int)Math.Min(int.MaxValue, _sendBytes - _sent));
            int sent = Socket.Send(from, SocketFlags.None, out SocketError error);
            if (error == SocketError.WouldBlock)
            {
                return SocketError.Success;
            }

            if (error != SocketError.Success)
            {
                return error;
            }

            _sent += sent;
            moved += sent;
        }

        return SocketError.Success;
    }

    /// <summary>Receives what has arrived, up to the end of the header (then <see cref="HeaderArrived"/>) or of the
    /// payload; <see cref="EndOfStream"/> when the other end closed the connection.</summary>
    public SocketError Receive(out long moved)
    {
        moved = 0;
        while (_receiving && !_headerArrived)
        {
            // The header alone first: where the payload goes depends on what the header says.
            Span<byte> into = _received < HeaderBytes
                ? _receiveHeader.AsSpan((int)_received)
                : new Span<byte>(_receivePayload + (_received - HeaderBytes), (int)Math.Min(int.MaxValue, _receiveBytes - _received));
            int received = Socket.Receive(into, SocketFlags.None, out SocketError error);
            if (error == SocketError.WouldBlock)
            {
                return SocketError.Success;
            }

            if (error != SocketError.Success)
            {
                return error;
            }

            if (received == 0)
            {
                return EndOfStream;
            }

            _received += received;
            moved += received;
            if (_received == HeaderBytes && _receivePayload is null)
            {
                _headerArrived = true;
            }
            else if (_received == _receiveBytes)
            {
                _receiving = false;
            }
        }

        return SocketError.Success;
    }

    /// <summary>Sends a whole leave frame if the socket takes it now and no other frame is half out (then the other end
    /// just sees the connection close).</summary>
    public void TrySendLeave(byte[] frame)
    {
        if (MidSend)
        {
            return;
        }

        _sendBytes = _sent = 0;
        Socket.Send(frame, SocketFlags.None, out _);
    }

    /// <summary>Closes the connection after what was sent: unread bytes are dropped first, because closing a socket with
    /// unread data makes the kernel reset the connection and throw away a leave frame not yet on the wire.</summary>
    public void Close()
    {
        try
        {
            Socket.Shutdown(SocketShutdown.Send);
            Span<byte> discard = stackalloc byte[4096];
            while (Socket.Receive(discard, SocketFlags.None, out SocketError error) > 0 && error == SocketError.Success)
            {
            }
        }
        catch (Exception e) when (e is SocketException or ObjectDisposedException)
        {
            // Already reset or closed: there is nothing left to say on it.
        }

        Socket.Dispose();
    }
}
