using System.Runtime.CompilerServices;

namespace Celer.Engine.Distributed;

/// <summary>
/// The shared memory under a <see cref="ShmCollectives"/> group: a memory-mapped file (under /dev/shm on Linux) holding
/// a header, one line per rank and two halves of data slots, one slot per rank in each. This class is only the layout;
/// the protocol over it lives in <see cref="ShmCollectives"/>.
/// <code>
/// header       magic u64 | layout version i32 | size i32 | slot bytes i64
/// rank k       arrived i64 | process id i32 | closed i32              (one line, stored only by rank k)
/// slot (h, k)  operation i32 | rows i32 | columns i64                 (half h, rank k: its own line)
///              data: slot bytes
/// </code>
/// Every word has one writing party, as in <see cref="ShmRingBuffer"/>: rank k's line and its two slots are stored by
/// rank k alone (its process id once, with a compare-exchange, so two processes cannot both join as rank k), the header
/// by the creator before anyone else has the name.
/// </summary>
internal sealed unsafe class ShmCollectivesLayout : IDisposable
{
    /// <summary>File names start with this; the creator's process id and a random part follow.</summary>
    public const string NamePrefix = "celer-collectives-";

    /// <summary>More ranks than any one host has cores; bounds the lines a corrupt header could make a rank map.</summary>
    public const int MaxRanks = 1024;

    /// <summary>The most one rank may put into one collective: a span's length (int.MaxValue floats).</summary>
    public const long MaxSlotBytes = (long)int.MaxValue * sizeof(float);

    // Every area starts on its own 128 bytes (see ShmRingBuffer): the ranks spinning on each other's arrival counters never
    // share a line with another rank's counter or with the data being copied.
    private const int LineBytes = 128;
    private const int HeaderBytes = LineBytes;
    // The bytes of "clrstcg1" (Celer shm collective group, layout 1) read as a little-endian integer.
    private const long Magic = 0x3167_6374_7372_6C63;
    private const int LayoutVersion = 1;

    private readonly ShmMapping _mapping;
    private readonly long _slotStride;

    private ShmCollectivesLayout(ShmMapping mapping, int size, long slotBytes)
    {
        _mapping = mapping;
        Size = size;
        SlotBytes = slotBytes;
        _slotStride = LineBytes + RoundUpToLine(slotBytes);
    }

    public int Size { get; }

    public long SlotBytes { get; }

    public static long FileBytes(int size, long slotBytes) =>
        HeaderBytes + ((long)size * LineBytes) + (2L * size * (LineBytes + RoundUpToLine(slotBytes)));

    /// <summary>Creates the file <paramref name="path"/>, zeroed and <see cref="FileBytes"/> long, and writes its header.</summary>
    public static ShmCollectivesLayout Create(string path, int size, long slotBytes)
    {
        var layout = new ShmCollectivesLayout(ShmMapping.Create(path, FileBytes(size, slotBytes), "a collective group"), size, slotBytes);
        layout.Header<int>(8) = LayoutVersion;
        layout.Header<int>(12) = size;
        layout.Header<long>(16) = slotBytes;
        // The magic last, so a file with it has a whole header. The ranks get the name only after the creator's Create
        // returns, so the magic guards against opening the wrong file rather than against a race, and needs no fence.
        layout.Header<long>(0) = Magic;
        return layout;
    }

    /// <summary>Maps an existing group's file, checking that it is one and that its header and size agree; the layout
    /// owns <paramref name="stream"/> from here on.</summary>
    public static ShmCollectivesLayout Open(FileStream stream, string name)
    {
        long length = stream.Length;
        Span<byte> header = stackalloc byte[24];
        if (length < HeaderBytes || stream.Read(header) != header.Length)
        {
            stream.Dispose();
            throw new InvalidDataException($"'{name}' is not a Celer collective group: the file is only {length} bytes.");
        }

        long magic = BitConverter.ToInt64(header);
        int version = BitConverter.ToInt32(header[8..]), size = BitConverter.ToInt32(header[12..]);
        long slotBytes = BitConverter.ToInt64(header[16..]);
        if (magic != Magic || version != LayoutVersion)
        {
            stream.Dispose();
            throw new InvalidDataException($"'{name}' is not a Celer collective group of layout {LayoutVersion} (magic {magic:x16}, layout {version}).");
        }

        if (size is < 1 or > MaxRanks || slotBytes is < 1 or > MaxSlotBytes || FileBytes(size, slotBytes) != length)
        {
            stream.Dispose();
            throw new InvalidDataException(
                $"Collective group '{name}' has a corrupt header: {size} ranks with slots of {slotBytes} bytes in a file of {length} bytes.");
        }

        return new ShmCollectivesLayout(new ShmMapping(stream, length), size, slotBytes);
    }

    /// <summary>How many collectives rank <paramref name="rank"/> has arrived at: it stores n once its data for
    /// collective n is in its slot.</summary>
    public ref long Arrived(int rank) => ref Unsafe.AsRef<long>(RankLine(rank));

    /// <summary>The id of the process that holds rank <paramref name="rank"/>, 0 until one joins.</summary>
    public ref int ProcessId(int rank) => ref Unsafe.AsRef<int>(RankLine(rank) + sizeof(long));

    /// <summary>Why rank <paramref name="rank"/> left the group (a <see cref="ShmCollectives"/> closing reason), 0 while
    /// it takes part.</summary>
    public ref int Closed(int rank) => ref Unsafe.AsRef<int>(RankLine(rank) + sizeof(long) + sizeof(int));

    /// <summary>What rank <paramref name="rank"/> put in its slot of half <paramref name="half"/>: the collective's kind.</summary>
    public ref int Operation(int half, int rank) => ref Unsafe.AsRef<int>(Slot(half, rank));

    public ref int Rows(int half, int rank) => ref Unsafe.AsRef<int>(Slot(half, rank) + sizeof(int));

    public ref long Columns(int half, int rank) => ref Unsafe.AsRef<long>(Slot(half, rank) + sizeof(long));

    /// <summary>The first <paramref name="count"/> floats of rank <paramref name="rank"/>'s data in half <paramref name="half"/>.</summary>
    public Span<float> Data(int half, int rank, int count) => new(Slot(half, rank) + LineBytes, count);

    public void Dispose() => _mapping.Dispose();

    private static long RoundUpToLine(long bytes) => (bytes + LineBytes - 1) / LineBytes * LineBytes;

    private byte* RankLine(int rank) => _mapping.Base + HeaderBytes + ((long)rank * LineBytes);

    private byte* Slot(int half, int rank) => _mapping.Base + HeaderBytes + ((long)Size * LineBytes) + ((((long)half * Size) + rank) * _slotStride);

    private ref T Header<T>(int offset) where T : unmanaged => ref Unsafe.AsRef<T>(_mapping.Base + offset);
}
