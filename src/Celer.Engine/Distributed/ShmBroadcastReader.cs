using System.Buffers;

namespace Celer.Engine.Distributed;

/// <summary>
/// One reading end of a shared-memory broadcast queue (see <see cref="ShmBroadcastWriter"/>): a worker process reads
/// every message the writer sends, in order, exactly once. One thread reads: a second calling at the same time gets
/// <see cref="InvalidOperationException"/>.
/// </summary>
public sealed class ShmBroadcastReader : IDisposable
{
    // What may follow the prefix in a name the writer made: its process id, a dash, a GUID's hex digits.
    private static readonly SearchValues<char> NameCharacters = SearchValues.Create("0123456789abcdef-");

    private readonly ShmRingBuffer _ring;
    private readonly Func<bool>? _isWriterAlive;
    private long _nextSequence = 1;
    private Exception? _brokenBy;
    private CallGate _gate;

    private ShmBroadcastReader(ShmRingBuffer ring, string name, int readerIndex, Func<bool>? isWriterAlive)
    {
        _ring = ring;
        Name = name;
        ReaderIndex = readerIndex;
        _isWriterAlive = isWriterAlive;
    }

    public string Name { get; }

    public int ReaderIndex { get; }

    /// <summary>Opens the queue the writer named <paramref name="name"/> as reader <paramref name="readerIndex"/> (each
    /// index belongs to one reader); the first message read is the writer's first.</summary>
    /// <param name="isWriterAlive">Asked every 10 ms while the reader waits (a worker answers from its parent process);
    /// a dead writer ends the wait with <see cref="BroadcastPeerDiedException"/>. Without it only the timeout ends a wait
    /// on a writer that died, since a writer that crashes cannot close the queue.</param>
    public static ShmBroadcastReader Open(string name, int readerIndex, Func<bool>? isWriterAlive = null)
    {
        // Only names the writer makes: the name comes from another process's command line and is joined to a folder.
        if (!name.StartsWith(ShmRingBuffer.NamePrefix, StringComparison.Ordinal) || name.Length > 128
            || name.AsSpan(ShmRingBuffer.NamePrefix.Length).IndexOfAnyExcept(NameCharacters) >= 0)
        {
            throw new ArgumentException($"'{name}' is not a broadcast queue name ({ShmRingBuffer.NamePrefix}<pid>-<hex>).", nameof(name));
        }

        ArgumentOutOfRangeException.ThrowIfNegative(readerIndex);
        string path = Path.Combine(ShmRingBuffer.Folder, name);
        FileStream stream;
        try
        {
#pragma warning disable CA2000 // the ring owns the stream (its mapping closes it), or the catch below disposes it
            stream = new FileStream(path, FileMode.Open, FileAccess.ReadWrite, FileShare.ReadWrite | FileShare.Delete);
#pragma warning restore CA2000
        }
        catch (FileNotFoundException e)
        {
            throw new FileNotFoundException($"There is no broadcast queue '{name}' in {ShmRingBuffer.Folder}: its writer closed it or the name is wrong.", path, e);
        }

        ShmRingBuffer ring;
        try
        {
            ring = ShmRingBuffer.Open(stream, name);
        }
        catch
        {
            stream.Dispose();
            throw;
        }

        if (readerIndex >= ring.ReaderCount)
        {
            int readerCount = ring.ReaderCount;
            ring.Dispose();
            throw new ArgumentOutOfRangeException(nameof(readerIndex), readerIndex,
                $"Broadcast queue '{name}' has {readerCount} reader(s), indices 0 to {readerCount - 1}.");
        }

        return new ShmBroadcastReader(ring, name, readerIndex, isWriterAlive);
    }

    /// <summary>Reads the next message into a new array.</summary>
    /// <param name="timeout">How long the reader may wait for the writer's next chunk (<see cref="Timeout.InfiniteTimeSpan"/>:
    /// no limit, the usual case for a worker waiting on an idle engine); past it, <see cref="BroadcastTimeoutException"/>.</param>
    /// <exception cref="BroadcastQueueClosedException">The writer closed the queue and everything it sent has been read.</exception>
    /// <exception cref="BroadcastPeerDiedException">The writer died while the reader waited.</exception>
    /// <remarks>A wait that fails before the message's first chunk leaves the reader where it was, to try again; one that
    /// fails part-way through a message breaks the reader, and every later call throws <see cref="InvalidOperationException"/>.</remarks>
    public byte[] Dequeue(TimeSpan timeout, CancellationToken cancellationToken = default)
    {
        BroadcastWait.Validate(timeout);
        _gate.Enter(this);
        try
        {
            int length = WaitForMessage(timeout, cancellationToken);
            byte[] message = length == 0 ? [] : GC.AllocateUninitializedArray<byte>(length);
            CopyMessage(message, timeout, cancellationToken);
            return message;
        }
        finally
        {
            _gate.Exit();
        }
    }

    /// <summary>Reads the next message into <paramref name="destination"/> and returns its length: with a reused
    /// buffer (<see cref="ArrayBufferWriter{T}.ResetWrittenCount"/>) a step's broadcast allocates nothing.</summary>
    public int Dequeue(IBufferWriter<byte> destination, TimeSpan timeout, CancellationToken cancellationToken = default)
    {
        BroadcastWait.Validate(timeout);
        _gate.Enter(this);
        try
        {
            int length = WaitForMessage(timeout, cancellationToken);
            CopyMessage(destination.GetSpan(length)[..length], timeout, cancellationToken);
            destination.Advance(length);
            return length;
        }
        finally
        {
            _gate.Exit();
        }
    }

    /// <summary>Unmaps the queue; a <see cref="Dequeue(TimeSpan, CancellationToken)"/> waiting on another thread leaves
    /// first, with <see cref="ObjectDisposedException"/>.</summary>
    public void Dispose()
    {
        if (_gate.Close())
        {
            _ring.Dispose();
        }
    }

    /// <summary>Waits for the next message's first chunk and returns the message's length, consuming nothing.</summary>
    private int WaitForMessage(TimeSpan timeout, CancellationToken cancellationToken)
    {
        if (_brokenBy is not null)
        {
            throw new InvalidOperationException(
                $"Broadcast queue '{Name}', reader {ReaderIndex}, is broken: an earlier message was cut off part-way ({_brokenBy.Message}).", _brokenBy);
        }

        int slot = _ring.Slot(_nextSequence);
        WaitForChunk(_nextSequence, slot, timeout, cancellationToken);
        int length = _ring.MessageBytes(slot);
        if (length < 0)
        {
            throw new InvalidDataException($"Broadcast queue '{Name}': message chunk {_nextSequence} claims a message of {length} bytes.");
        }

        return length;
    }

    /// <summary>Copies the message whose first chunk <see cref="WaitForMessage"/> found, chunk by chunk, marking each read
    /// as soon as it is copied so the writer can reuse it while the rest of a long message arrives.</summary>
    private void CopyMessage(Span<byte> destination, TimeSpan timeout, CancellationToken cancellationToken)
    {
        long first = _nextSequence;
        int offset = 0;
        try
        {
            do
            {
                long sequence = _nextSequence;
                int slot = _ring.Slot(sequence);
                if (sequence != first)
                {
                    WaitForChunk(sequence, slot, timeout, cancellationToken);
                    if (_ring.MessageBytes(slot) != destination.Length)
                    {
                        throw new InvalidDataException(
                            $"Broadcast queue '{Name}': message chunk {sequence} belongs to a message of {_ring.MessageBytes(slot)} bytes, " +
                            $"but continues one of {destination.Length}.");
                    }
                }

                int payload = Math.Min(_ring.ChunkBytes, destination.Length - offset);
                _ring.Data(slot)[..payload].CopyTo(destination[offset..]);
                // Release: the copy above completes before the writer can see the chunk as read and overwrite it. Arm64
                // may otherwise let a later store pass earlier loads (stlr prevents it); x86 never does, so there this
                // only stops the JIT from moving the copy past the store.
                Volatile.Write(ref _ring.ReadSequence(slot, ReaderIndex), sequence);
                _nextSequence = sequence + 1;
                offset += payload;
            }
            while (offset < destination.Length);
        }
        catch (Exception e)
        {
            if (_nextSequence != first)
            {
                _brokenBy = e;
            }

            throw;
        }
    }

    /// <summary>Waits until the writer has published chunk <paramref name="sequence"/> in <paramref name="slot"/>.</summary>
    private void WaitForChunk(long sequence, int slot, TimeSpan timeout, CancellationToken cancellationToken)
    {
        if (Published(slot) == sequence)
        {
            return;
        }

        long previous = _ring.PreviousInSlot(sequence);
        var wait = new BroadcastWait(timeout);
        for (long found = Published(slot); found != sequence; found = Published(slot))
        {
            if (found != previous)
            {
                // The slot holds neither the chunk expected nor the one it replaces: this reader was overtaken, which the
                // writer's waiting rules out unless a second reader uses this index or the file was written by another writer.
                throw new InvalidDataException(
                    $"Broadcast queue '{Name}': reader {ReaderIndex} expected message chunk {sequence} (or {previous} before it) " +
                    $"in slot {slot} but found {found}; another reader uses index {ReaderIndex}, or the writer restarted.");
            }

            if (wait.Pause(cancellationToken))
            {
                ThrowIfWriterGone(sequence, slot, timeout, wait);
            }
        }
    }

    private void ThrowIfWriterGone(long sequence, int slot, TimeSpan timeout, in BroadcastWait wait)
    {
        ObjectDisposedException.ThrowIf(_gate.DisposeRequested, this);
        // Acquire: the writer stores the closed flag after its last chunk's sequence (both release), so once this load
        // sees the flag, the sequence read after it is final. Each "gone" case reads the sequence once more before it
        // throws, so a chunk published just before closing or dying is still delivered.
        if (Volatile.Read(ref _ring.Closed) != 0)
        {
            if (Published(slot) != sequence)
            {
                throw new BroadcastQueueClosedException($"Broadcast queue '{Name}' was closed by its writer before message chunk {sequence}, which reader {ReaderIndex} waited for.");
            }

            return;
        }

        // A process's stores are in shared memory by the time it is seen to have exited, so the re-read after the
        // liveness check sees anything the writer published before it died.
        if (_isWriterAlive is not null && !_isWriterAlive() && Published(slot) != sequence)
        {
            throw new BroadcastPeerDiedException(
                $"Broadcast queue '{Name}': the writer died while reader {ReaderIndex} waited {wait.Elapsed.TotalMilliseconds:F0} ms " +
                $"for message chunk {sequence}.", reader: null);
        }

        if (wait.TimedOut && Published(slot) != sequence)
        {
            throw new BroadcastTimeoutException(
                $"Broadcast queue '{Name}': reader {ReaderIndex} waited {timeout.TotalMilliseconds:F0} ms for message chunk {sequence} from the writer.", []);
        }
    }

    // Acquire: the chunk's data and length, stored before the writer's release store of this sequence, are visible to
    // the loads that follow this one (Arm64: ldar; on x86 loads are not reordered with loads, so this only keeps the JIT
    // from hoisting the load out of the spin loop or moving the data loads above it).
    private long Published(int slot) => Volatile.Read(ref _ring.Sequence(slot));
}
