using System.Buffers.Binary;
using System.Text;

namespace Celer.Engine.Distributed;

/// <summary>
/// The bytes the ranks of a <see cref="TcpCollectives"/> group exchange. Integers are little-endian; a collective's
/// floats follow its header as raw bytes in the host's order, as in the shared-memory group (every host Celer runs on,
/// x86-64 and Arm64, is little-endian).
/// <code>
/// hello   (joining rank → rank 0)  magic u64 | protocol version i32 | rank i32 | size i32 | zero i32
/// answer  (rank 0 → joining rank)  magic u64 | protocol version i32 | refused i32 (0 or 1) | reason bytes i32 | zero i32
///                                  then the reason, UTF-8 (none when accepted)
/// frame   (either way)             marker u32 | kind i32 | sequence i64 | rows i32 | columns i32
///                                  then rows × columns floats (a collective), or the reason, UTF-8 (a leave)
/// </code>
/// A leave frame (kinds <see cref="KindDied"/> and <see cref="KindLeft"/>) says why the sender is closing the group: its rows
/// field names the rank the failure is about, its columns field is the reason's length.
/// </summary>
internal static class TcpCollectivesFrames
{
    public const int HelloBytes = 24, AnswerBytes = 24, HeaderBytes = 24;

    /// <summary>The longest reason a refusal or a leave frame carries; longer ones are cut.</summary>
    public const int MaxReasonBytes = 2048;

    public const int ProtocolVersion = 1;

    /// <summary>Frame kinds: the two collectives, then the two ways of leaving (a rank died; a rank left or failed).</summary>
    public const int KindAllReduce = 1, KindAllGather = 2, KindDied = 3, KindLeft = 4;

    // The bytes of "celertcp" read as a little-endian integer: what a connection to rank 0 must start with.
    private const long Magic = 0x7063_7472_656C_6563;

    // The bytes of "tcpc": every frame starts with them, so a stream that lost its place fails at the next header.
    private const uint Marker = 0x6370_6374;

    public static void WriteHello(Span<byte> hello, int rank, int size)
    {
        BinaryPrimitives.WriteInt64LittleEndian(hello, Magic);
        BinaryPrimitives.WriteInt32LittleEndian(hello[8..], ProtocolVersion);
        BinaryPrimitives.WriteInt32LittleEndian(hello[12..], rank);
        BinaryPrimitives.WriteInt32LittleEndian(hello[16..], size);
        BinaryPrimitives.WriteInt32LittleEndian(hello[20..], 0);
    }

    /// <summary>True when <paramref name="start"/> (at least 8 bytes) can begin a hello: lets rank 0 turn away a stray
    /// connection without waiting for a whole hello it may never send.</summary>
    public static bool StartsWithMagic(ReadOnlySpan<byte> start) => BinaryPrimitives.ReadInt64LittleEndian(start) == Magic;

    /// <summary>Why rank 0 of a group of <paramref name="size"/> ranks turns a hello away, or null when the hello is
    /// good; <paramref name="rank"/> is the rank it asks for.</summary>
    public static string? CheckHello(ReadOnlySpan<byte> hello, int size, out int rank)
    {
        rank = BinaryPrimitives.ReadInt32LittleEndian(hello[12..]);
        int version = BinaryPrimitives.ReadInt32LittleEndian(hello[8..]), theirSize = BinaryPrimitives.ReadInt32LittleEndian(hello[16..]);
        if (!StartsWithMagic(hello))
        {
            return "it is not a Celer collective-group connection (wrong magic number)";
        }

        if (version != ProtocolVersion)
        {
            return $"it speaks protocol version {version}, this rank 0 version {ProtocolVersion} (the ranks run different Celer builds)";
        }

        if (theirSize != size)
        {
            return $"it expects a group of {theirSize} ranks, this group has {size}";
        }

        return rank < 1 || rank >= size ? $"rank {rank} is not one of the joining ranks, 1 to {size - 1}" : null;
    }

    /// <summary>An answer to a hello: accepted (<paramref name="refusal"/> null) or refused with the reason.</summary>
    public static byte[] Answer(string? refusal)
    {
        byte[] reason = refusal is null ? [] : Reason(refusal);
        byte[] answer = new byte[AnswerBytes + reason.Length];
        BinaryPrimitives.WriteInt64LittleEndian(answer, Magic);
        BinaryPrimitives.WriteInt32LittleEndian(answer.AsSpan(8), ProtocolVersion);
        BinaryPrimitives.WriteInt32LittleEndian(answer.AsSpan(12), refusal is null ? 0 : 1);
        BinaryPrimitives.WriteInt32LittleEndian(answer.AsSpan(16), reason.Length);
        reason.CopyTo(answer, AnswerBytes);
        return answer;
    }

    /// <summary>Reads an answer's fixed part: false when it is not from a Celer rank 0 of this protocol version.</summary>
    public static bool ReadAnswer(ReadOnlySpan<byte> answer, out bool refused, out int reasonBytes)
    {
        refused = BinaryPrimitives.ReadInt32LittleEndian(answer[12..]) != 0;
        reasonBytes = BinaryPrimitives.ReadInt32LittleEndian(answer[16..]);
        return StartsWithMagic(answer) && BinaryPrimitives.ReadInt32LittleEndian(answer[8..]) == ProtocolVersion
            && reasonBytes is >= 0 and <= MaxReasonBytes;
    }

    public static void WriteHeader(Span<byte> header, int kind, long sequence, int rows, int columns)
    {
        BinaryPrimitives.WriteUInt32LittleEndian(header, Marker);
        BinaryPrimitives.WriteInt32LittleEndian(header[4..], kind);
        BinaryPrimitives.WriteInt64LittleEndian(header[8..], sequence);
        BinaryPrimitives.WriteInt32LittleEndian(header[16..], rows);
        BinaryPrimitives.WriteInt32LittleEndian(header[20..], columns);
    }

    /// <summary>Reads a frame header; false when it does not start with the marker (the stream lost its place).</summary>
    public static bool ReadHeader(ReadOnlySpan<byte> header, out int kind, out long sequence, out int rows, out int columns)
    {
        kind = BinaryPrimitives.ReadInt32LittleEndian(header[4..]);
        sequence = BinaryPrimitives.ReadInt64LittleEndian(header[8..]);
        rows = BinaryPrimitives.ReadInt32LittleEndian(header[16..]);
        columns = BinaryPrimitives.ReadInt32LittleEndian(header[20..]);
        return BinaryPrimitives.ReadUInt32LittleEndian(header) == Marker;
    }

    /// <summary>A whole leave frame: <paramref name="kind"/> <see cref="KindDied"/> or <see cref="KindLeft"/>, about
    /// <paramref name="rank"/>, with the reason.</summary>
    public static byte[] Leave(int kind, long sequence, int rank, string reason)
    {
        byte[] text = Reason(reason);
        byte[] frame = new byte[HeaderBytes + text.Length];
        WriteHeader(frame, kind, sequence, rank, text.Length);
        text.CopyTo(frame, HeaderBytes);
        return frame;
    }

    /// <summary>The reason's UTF-8 bytes, cut to <see cref="MaxReasonBytes"/> at a character's start.</summary>
    private static byte[] Reason(string reason)
    {
        byte[] text = Encoding.UTF8.GetBytes(reason);
        if (text.Length <= MaxReasonBytes)
        {
            return text;
        }

        int end = MaxReasonBytes;
        while ((text[end] & 0xC0) == 0x80)
        {
            end--;
        }

        return text[..end];
    }
}
