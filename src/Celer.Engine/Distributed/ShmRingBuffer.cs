using System.Runtime.CompilerServices;

namespace Celer.Engine.Distributed;

/// <summary>
/// The shared memory under one <see cref="ShmBroadcastWriter"/> and its <see cref="ShmBroadcastReader"/>s, after vLLM's
/// <c>ShmRingBuffer</c>: a memory-mapped file (under /dev/shm on Linux) holding a header and a ring of chunks, each chunk a
/// metadata area and a data area. This class is only the layout; the protocol over it lives in the writer and reader.
/// <code>
/// header     magic u64 | layout version i32 | reader count i32 | chunk count i32 | chunk bytes i32 | closed i32
/// chunk k    sequence i64 | message bytes i32                       (the writer's line: the "written" flag)
///            read sequence i64 × reader count                       (one "read" flag per reader)
///            data: chunk bytes
/// </code>
/// vLLM's flags are bytes that go 0 → 1 and are reset by the writer; here the written flag is the 64-bit sequence number
/// of the chunk it holds and each read flag the sequence number that reader last finished in this chunk. A chunk is
/// readable when its sequence is the one the reader expects, and free when every reader's read sequence equals the
/// chunk's current sequence, so nothing is ever reset (vLLM's careful reset-then-set order disappears), every word has one
/// writing party (no read-modify-write, no <c>Interlocked</c>), and a reader that finds any other number knows the ring
/// does not hold what it expects (it fell behind, shares its index with another reader, or the writer restarted).
/// </summary>
internal sealed unsafe class ShmRingBuffer : IDisposable
{
    /// <summary>File names start with this; the writer's process id and a random part follow.</summary>
    public const string NamePrefix = "celer-broadcast-";

    /// <summary>More readers than any one host's GPUs; bounds the metadata a corrupt header could make a reader map.</summary>
    public const int MaxReaders = 1024;

    // Every area starts on its own 128 bytes: 64-byte lines on x86 but fetched in adjacent pairs by Intel's spatial
    // prefetcher, and 128-byte lines on Apple's Arm cores. The readers' spinning on a chunk's sequence then never shares a
    // line with the read flags the others are storing, nor with the data.
    private const int LineBytes = 128;
    private const int HeaderBytes = LineBytes;
    // The bytes of "clrstbq1" (Celer shm broadcast queue, layout 1) read as a little-endian integer.
    private const long Magic = 0x3171_6274_7372_6C63;
    private const int LayoutVersion = 1;

    private readonly ShmMapping _mapping;
    private readonly byte* _base;
    private readonly long _chunkStride;
    private readonly int _readFlagsOffset;
    private readonly int _dataOffset;

    private ShmRingBuffer(FileStream stream, int readerCount, int chunkBytes, int chunkCount)
    {
        _mapping = new ShmMapping(stream, FileBytes(readerCount, chunkBytes, chunkCount));
        _base = _mapping.Base;
        ReaderCount = readerCount;
        ChunkCount = chunkCount;
        ChunkBytes = chunkBytes;
        (_readFlagsOffset, _dataOffset, _chunkStride) = Geometry(readerCount, chunkBytes);
    }

    public int ReaderCount { get; }

    public int ChunkCount { get; }

    public int ChunkBytes { get; }

    /// <summary>Set to 1 by the writer when it is disposed, after its last chunk: the readers stop waiting.</summary>
    public ref int Closed => ref Header<int>(24);

    /// <summary>The folder the queues' files live in: /dev/shm where it exists (memory, never written back to a disk),
    /// else the temporary folder (macOS, Windows, containers without /dev/shm): still shared, but the kernel may write it back to disk.</summary>
    public static string Folder { get; } = OperatingSystem.IsLinux() && Directory.Exists("/dev/shm") ? "/dev/shm" : Path.GetTempPath();

    public static long FileBytes(int readerCount, int chunkBytes, int chunkCount) =>
        HeaderBytes + (chunkCount * Geometry(readerCount, chunkBytes).ChunkStride);

    /// <summary>Maps a new file, zeroed and <see cref="FileBytes"/> long, and writes its header; the ring owns
    /// <paramref name="stream"/> from here on.</summary>
    public static ShmRingBuffer Create(FileStream stream, int readerCount, int chunkBytes, int chunkCount)
    {
        var ring = new ShmRingBuffer(stream, readerCount, chunkBytes, chunkCount);
        ring.Header<int>(8) = LayoutVersion;
        ring.Header<int>(12) = readerCount;
        ring.Header<int>(16) = chunkCount;
        ring.Header<int>(20) = chunkBytes;
        // The magic last, so a file with it has a whole header. The readers get the name only after the writer's Create
        // returns, so the magic guards against opening the wrong file rather than against a race, and needs no fence.
        ring.Header<long>(0) = Magic;
        return ring;
    }

    /// <summary>Maps an existing queue's file, checking that it is one and that its header and size agree.</summary>
    public static ShmRingBuffer Open(FileStream stream, string name)
    {
        long length = stream.Length;
        Span<byte> header = stackalloc byte[24];
        if (length < HeaderBytes || stream.Read(header) != header.Length)
        {
            throw new InvalidDataException($"'{name}' is not a Celer broadcast queue: the file is only {length} bytes.");
        }

        long magic = BitConverter.ToInt64(header);
        int version = BitConverter.ToInt32(header[8..]), readers = BitConverter.ToInt32(header[12..]);
        int chunks = BitConverter.ToInt32(header[16..]), chunkBytes = BitConverter.ToInt32(header[20..]);
        if (magic != Magic || version != LayoutVersion)
        {
            throw new InvalidDataException($"'{name}' is not a Celer broadcast queue of layout {LayoutVersion} (magic {magic:x16}, layout {version}).");
        }

        if (readers is < 1 or > MaxReaders || chunks < 1 || chunkBytes < 1 || FileBytes(readers, chunkBytes, chunks) != length)
        {
            throw new InvalidDataException(
                $"Broadcast queue '{name}' has a corrupt header: {readers} readers, {chunks} chunks of {chunkBytes} bytes in a file of {length} bytes.");
        }

        return new ShmRingBuffer(stream, readers, chunkBytes, chunks);
    }

    /// <summary>The chunk's written flag: the sequence number (from 1) of the message chunk it holds, 0 before its first.</summary>
    public ref long Sequence(int slot) => ref Unsafe.AsRef<long>(Chunk(slot));

    /// <summary>The length of the whole message this chunk is part of (a message longer than a chunk spans several).</summary>
    public ref int MessageBytes(int slot) => ref Unsafe.AsRef<int>(Chunk(slot) + sizeof(long));

    /// <summary>Reader <paramref name="reader"/>'s read flag: the sequence number it last finished reading in this chunk.</summary>
    public ref long ReadSequence(int slot, int reader) => ref Unsafe.AsRef<long>(Chunk(slot) + _readFlagsOffset + (reader * sizeof(long)));

    public Span<byte> Data(int slot) => new(Chunk(slot) + _dataOffset, ChunkBytes);

    /// <summary>The ring position of message chunk <paramref name="sequence"/> (sequences start at 1).</summary>
    public int Slot(long sequence) => (int)((sequence - 1) % ChunkCount);

    /// <summary>The sequence a slot holds just before <paramref name="sequence"/> is written to it: the one a lap
    /// earlier, or 0 (never written) on the first lap.</summary>
    public long PreviousInSlot(long sequence) => sequence > ChunkCount ? sequence - ChunkCount : 0;

    public void Dispose() => _mapping.Dispose();

    private static (int ReadFlagsOffset, int DataOffset, long ChunkStride) Geometry(int readerCount, int chunkBytes)
    {
        int readFlagsOffset = LineBytes;
        int dataOffset = readFlagsOffset + (int)RoundUpToLine(readerCount * sizeof(long));
        return (readFlagsOffset, dataOffset, dataOffset + RoundUpToLine(chunkBytes));
    }

    private static long RoundUpToLine(long bytes) => (bytes + LineBytes - 1) / LineBytes * LineBytes;

    private byte* Chunk(int slot) => _base + HeaderBytes + (slot * _chunkStride);

    private ref T Header<T>(int offset) where T : unmanaged => ref Unsafe.AsRef<T>(_base + offset);
}
