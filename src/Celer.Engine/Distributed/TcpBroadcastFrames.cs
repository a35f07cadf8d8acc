using System.Buffers.Binary;
using System.Net.Sockets;
using System.Text;

namespace Celer.Engine.Distributed;

/// <summary>
/// The wire format between <see cref="TcpBroadcastServer"/> (rank 0) and its <see cref="TcpBroadcastClient"/>s (ranks on
/// other hosts), and the socket settings both ends share.
/// <code>
/// hello      magic u64 | protocol version i32 | rank i32            (client → server, once, 16 bytes)
/// frame      kind u8 | 0 u8 × 3 | payload bytes u32 | payload      (little-endian)
///   Accepted   server → client, empty: the hello was taken
///   Refused    server → client, UTF-8 reason, then the server hangs up
///   Message    server → client, one broadcast message
///   Close      server → client, empty: nothing follows (the writer was disposed)
///   Reply      client → server, UTF-8 text ("ready", an error before the worker exits)
/// </code>
/// The hello and the Accepted/Refused answer keep this layout in every protocol version, so that a client of another
/// version is told why it was refused instead of misreading what follows. Every header read from the network is checked
/// (kind, zero padding, a length limit per kind) before anything is allocated for its payload.
/// </summary>
internal static class TcpBroadcastFrames
{
    /// <summary>The bytes of "clrtcpbq" (Celer TCP broadcast queue) read as a little-endian integer.</summary>
    public const long Magic = 0x7162_7063_7472_6C63;

    public const int ProtocolVersion = 1;

    public const int HelloBytes = 16;

    public const int HeaderBytes = 8;

    /// <summary>The longest message: what one array can hold, so that a reader can always return it.</summary>
    public static readonly int MaxMessageBytes = Array.MaxLength;

    /// <summary>A reply is a line of status or an exception's text with its stack; 1 MiB is far above either and bounds
    /// what a misbehaving reader can make rank 0 allocate.</summary>
    public const int MaxReplyBytes = 1 << 20;

    /// <summary>A refusal's reason is one sentence.</summary>
    public const int MaxReasonBytes = 4096;

    /// <summary>How long an idle connection goes before keep-alive probes start, and between probes: a host that
    /// vanished (power, network) is noticed in about half a minute even when nothing is being sent.</summary>
    private const int KeepAliveIdleSeconds = 10, KeepAliveIntervalSeconds = 5, KeepAliveProbes = 4;

    /// <summary>How long sent data may go unacknowledged before Linux gives the connection up (TCP_USER_TIMEOUT): without
    /// it a step sent to a vanished host sits in retransmission for ~15 minutes, during which keep-alive is not used.</summary>
    private const int UnacknowledgedMilliseconds = 30_000;

    // Linux's IPPROTO_TCP and TCP_USER_TIMEOUT (linux/tcp.h), which .NET has no SocketOptionName for.
    private const int IpProtoTcp = 6, TcpUserTimeout = 18;

    private static readonly UTF8Encoding StrictUtf8 = new(encoderShouldEmitUTF8Identifier: false, throwOnInvalidBytes: true);

    public enum Kind : byte
    {
        Accepted = 1,
        Refused = 2,
        Message = 3,
        Close = 4,
        Reply = 5,
    }

    public static void WriteHello(Span<byte> destination, int rank)
    {
        BinaryPrimitives.WriteInt64LittleEndian(destination, Magic);
        BinaryPrimitives.WriteInt32LittleEndian(destination[8..], ProtocolVersion);
        BinaryPrimitives.WriteInt32LittleEndian(destination[12..], rank);
    }

    /// <summary>Reads a hello; null and the reason when it is not one of this protocol version.</summary>
    public static (int? Rank, string? Refusal) ReadHello(ReadOnlySpan<byte> hello)
    {
        long magic = BinaryPrimitives.ReadInt64LittleEndian(hello);
        int version = BinaryPrimitives.ReadInt32LittleEndian(hello[8..]);
        int rank = BinaryPrimitives.ReadInt32LittleEndian(hello[12..]);
        if (magic != Magic)
        {
            return (null, $"this port serves Celer's tensor-parallel broadcast; the connection did not start with its hello (magic {magic:x16}).");
        }

        if (version != ProtocolVersion)
        {
            return (null, $"rank 0 speaks broadcast protocol version {ProtocolVersion}, rank {rank} version {version}: run the same Celer build on every node.");
        }

        return (rank, null);
    }

    public static void WriteHeader(Span<byte> destination, Kind kind, int payloadBytes)
    {
        destination[0] = (byte)kind;
        destination[1..4].Clear();
        BinaryPrimitives.WriteUInt32LittleEndian(destination[4..], (uint)payloadBytes);
    }

    /// <summary>Checks a header that came from <paramref name="peer"/>: one of the <paramref name="expected"/> kinds, zero
    /// padding, and a length within that kind's limit.</summary>
    /// <exception cref="InvalidDataException">Anything else: the peer is corrupt, hostile, or not a Celer rank.</exception>
    public static (Kind Kind, int PayloadBytes) ReadHeader(ReadOnlySpan<byte> header, string peer, ReadOnlySpan<Kind> expected)
    {
        var kind = (Kind)header[0];
        uint length = BinaryPrimitives.ReadUInt32LittleEndian(header[4..]);
        if (!expected.Contains(kind) || header[1..4].IndexOfAnyExcept((byte)0) >= 0)
        {
            throw new InvalidDataException(
                $"{peer} sent a frame header {Convert.ToHexString(header[..HeaderBytes])} that is not one of {string.Join(", ", expected.ToArray())}: " +
                "the stream is corrupt or the peer is not a Celer rank.");
        }

        long limit = kind switch
        {
            Kind.Message => MaxMessageBytes,
            Kind.Reply => MaxReplyBytes,
            Kind.Refused => MaxReasonBytes,
            _ => 0,
        };
        if (length > limit)
        {
            throw new InvalidDataException($"{peer} sent a {kind} frame of {length} bytes; at most {limit} are allowed.");
        }

        return (kind, (int)length);
    }

    /// <summary>Decodes a reply or a refusal's reason, rejecting bytes that are not UTF-8.</summary>
    public static string DecodeText(ReadOnlySpan<byte> payload, string peer)
    {
        try
        {
            return StrictUtf8.GetString(payload);
        }
        catch (DecoderFallbackException e)
        {
            throw new InvalidDataException($"{peer} sent text that is not UTF-8: {e.Message}", e);
        }
    }

    public static byte[] EncodeText(string text, int maxBytes, string what)
    {
        int bytes = StrictUtf8.GetByteCount(text);
        if (bytes > maxBytes)
        {
            throw new ArgumentException($"A {what} is at most {maxBytes} bytes of UTF-8; this one is {bytes}.", nameof(text));
        }

        return StrictUtf8.GetBytes(text);
    }

    /// <summary>The settings of every connection, either end: no Nagle delay (a decode step's few KB go out at once, not
    /// after the previous packet's acknowledgement), and keep-alive so an idle connection to a vanished host ends.</summary>
    public static void Configure(Socket socket)
    {
        socket.NoDelay = true;
        socket.SetSocketOption(SocketOptionLevel.Socket, SocketOptionName.KeepAlive, true);
        socket.SetSocketOption(SocketOptionLevel.Tcp, SocketOptionName.TcpKeepAliveTime, KeepAliveIdleSeconds);
        socket.SetSocketOption(SocketOptionLevel.Tcp, SocketOptionName.TcpKeepAliveInterval, KeepAliveIntervalSeconds);
        socket.SetSocketOption(SocketOptionLevel.Tcp, SocketOptionName.TcpKeepAliveRetryCount, KeepAliveProbes);
        if (OperatingSystem.IsLinux())
        {
            Span<byte> milliseconds = stackalloc byte[sizeof(int)];
            BinaryPrimitives.WriteInt32LittleEndian(milliseconds, UnacknowledgedMilliseconds);
            socket.SetRawSocketOption(IpProtoTcp, TcpUserTimeout, milliseconds);
        }
    }

    /// <summary>Receives exactly <paramref name="buffer"/>'s length; false when the peer hung up before its first byte.</summary>
    /// <exception cref="EndOfStreamException">The peer hung up part-way.</exception>
    public static async ValueTask<bool> ReceiveExactlyAsync(Socket socket, Memory<byte> buffer, CancellationToken cancellationToken)
    {
        int received = 0;
        while (received < buffer.Length)
        {
            int n = await socket.ReceiveAsync(buffer[received..], SocketFlags.None, cancellationToken);
            if (n == 0)
            {
                return received == 0 ? false : throw new EndOfStreamException($"The connection ended {received} bytes into a {buffer.Length}-byte read.");
            }

            received += n;
        }

        return true;
    }
}
