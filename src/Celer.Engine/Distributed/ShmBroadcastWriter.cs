namespace Celer.Engine.Distributed;

/// <summary>
/// The writing end of a shared-memory broadcast queue, as vLLM's <c>MessageQueue</c> on one host: the engine core puts
/// each step's work in it once and every worker process (an <see cref="ShmBroadcastReader"/>) reads all of it, in order,
/// exactly once. Messages are byte strings. One thread writes: a second calling at the same time gets
/// <see cref="InvalidOperationException"/>.
/// </summary>
/// <remarks>
/// <para>The readers open the queue by <see cref="Name"/>, each with its own index from 0 to reader count − 1, at any
/// time before the writer is disposed: the writer never gets more than a ring ahead of any reader, so a late one misses
/// nothing. Disposing closes the queue: the readers get what was sent, then <see cref="BroadcastQueueClosedException"/>;
/// the file is deleted.</para>
/// <para>A message longer than a chunk is cut across consecutive chunks, where vLLM sends it over a ZMQ socket beside
/// the ring. One channel instead of two: the same flags, timeouts and liveness checks cover every byte, there is no
/// socket to set up, lose or wait on separately, and a message larger than the whole ring still passes, streaming as
/// the readers copy it out. What it costs is that a huge message (a batch of long prompts) occupies the ring until every
/// reader has copied it, which a step's broadcast, consumed at once, does not notice.</para>
/// </remarks>
public sealed class ShmBroadcastWriter : IDisposable
{
    private readonly ShmRingBuffer _ring;
    private readonly string _path;
    private readonly Func<int, bool>? _isReaderAlive;
    private long _nextSequence = 1;
    private Exception? _brokenBy;
    private CallGate _gate;

    private ShmBroadcastWriter(ShmRingBuffer ring, string path, Func<int, bool>? isReaderAlive)
    {
        _ring = ring;
        _path = path;
        _isReaderAlive = isReaderAlive;
        Name = Path.GetFileName(path);
    }

    /// <summary>What readers pass to <see cref="ShmBroadcastReader.Open"/>: a file name under /dev/shm, unique per queue.</summary>
    public string Name { get; }

    /// <summary>Creates a queue of <paramref name="chunkCount"/> chunks of <paramref name="chunkBytes"/> each for
    /// <paramref name="readerCount"/> readers, reserving its memory now (so a too-small /dev/shm is an error here, not a
    /// SIGBUS later), and deletes the files that writers which died without disposing theirs left behind.</summary>
    /// <param name="isReaderAlive">Asked, with a reader's index, every 10 ms while the writer waits for that reader
    /// (the executor answers from <c>Process.HasExited</c>); a dead reader ends the wait with
    /// <see cref="BroadcastPeerDiedException"/>. Without it only the timeout ends a wait on a dead reader.</param>
    public static ShmBroadcastWriter Create(int readerCount, int chunkBytes, int chunkCount, Func<int, bool>? isReaderAlive = null)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(readerCount, 1);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(readerCount, ShmRingBuffer.MaxReaders);
        ArgumentOutOfRangeException.ThrowIfLessThan(chunkBytes, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(chunkCount, 1);
        StaleBroadcastFiles.Delete(ShmRingBuffer.Folder);

        // The process id lets a later writer tell a dead writer's file from a live one; the random part keeps two queues
        // of one process, or a restarted writer that got a dead one's id, from ever opening each other's file.
        string path = Path.Combine(ShmRingBuffer.Folder, $"{ShmRingBuffer.NamePrefix}{Environment.ProcessId}-{Guid.NewGuid():N}");
        long bytes = ShmRingBuffer.FileBytes(readerCount, chunkBytes, chunkCount);
#pragma warning disable CA2000 // the ring owns the stream (its mapping closes it), or the catch below disposes it
        FileStream stream = ShmMapping.CreateFile(path, bytes, "a broadcast queue");
#pragma warning restore CA2000

        ShmRingBuffer ring;
        try
        {
            ring = ShmRingBuffer.Create(stream, readerCount, chunkBytes, chunkCount);
        }
        catch
        {
            stream.Dispose();
            File.Delete(path);
            throw;
        }

        return new ShmBroadcastWriter(ring, path, isReaderAlive);
    }

    /// <summary>
    /// Sends <paramref name="message"/> to every reader. It takes ⌈length / chunk bytes⌉ chunks (one when empty); each
    /// chunk waits until every reader has read the chunk a lap earlier in its slot, so a slow reader holds the writer
    /// back and a message longer than the whole ring streams through it as the readers keep up.
    /// </summary>
    /// <param name="timeout">How long the writer may wait for the readers to free one chunk
    /// (<see cref="Timeout.InfiniteTimeSpan"/>: no limit); past it, <see cref="BroadcastTimeoutException"/> names them.</param>
    /// <remarks>A wait that fails before the message's first chunk is published leaves the queue as it was, and the
    /// message can be sent again. One that fails part-way leaves the readers holding half a message: the queue is
    /// broken, and every later call throws <see cref="InvalidOperationException"/>.</remarks>
    public void Enqueue(ReadOnlySpan<byte> message, TimeSpan timeout, CancellationToken cancellationToken = default)
    {
        BroadcastWait.Validate(timeout);
        _gate.Enter(this);
        try
        {
            if (_brokenBy is not null)
            {
                throw new InvalidOperationException(
                    $"Broadcast queue '{Name}' is broken: an earlier message was cut off part-way ({_brokenBy.Message}).", _brokenBy);
            }

            WriteChunks(message, timeout, cancellationToken);
        }
        finally
        {
            _gate.Exit();
        }
    }

    /// <summary>Closes the queue (readers waiting see it within 10 ms, after reading everything sent) and deletes its file;
    /// an <see cref="Enqueue"/> waiting on another thread leaves first, with <see cref="ObjectDisposedException"/>.</summary>
    public void Dispose()
    {
        if (!_gate.Close())
        {
            return;
        }

        // Release: every chunk's sequence stored before this is visible to a reader that sees the queue closed, so a
        // reader that finds it closed and then its next chunk still unwritten knows nothing more is coming.
        Volatile.Write(ref _ring.Closed, 1);
        _ring.Dispose();
        // Readers that have the file mapped keep their mapping; the name goes so no one opens it again.
        File.Delete(_path);
    }

    private void WriteChunks(ReadOnlySpan<byte> message, TimeSpan timeout, CancellationToken cancellationToken)
    {
        long first = _nextSequence;
        int offset = 0;
        try
        {
            do
            {
                long sequence = _nextSequence;
                int slot = _ring.Slot(sequence);
                WaitUntilRead(slot, sequence, timeout, cancellationToken);
                int payload = Math.Min(_ring.ChunkBytes, message.Length - offset);
                message.Slice(offset, payload).CopyTo(_ring.Data(slot));
                _ring.MessageBytes(slot) = message.Length;
                // Release: the data and length above become visible to a reader no later than the sequence that says
                // they are there (Arm64: stlr; x86 keeps stores in order anyway, so this only stops the JIT moving them).
                Volatile.Write(ref _ring.Sequence(slot), sequence);
                _nextSequence = sequence + 1;
                offset += payload;
            }
            while (offset < message.Length);
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

    /// <summary>Waits until every reader has read the chunk that <paramref name="sequence"/> replaces in its slot.</summary>
    private void WaitUntilRead(int slot, long sequence, TimeSpan timeout, CancellationToken cancellationToken)
    {
        long previous = _ring.PreviousInSlot(sequence);
        if (AllRead(slot, previous))
        {
            return;
        }

        var wait = new BroadcastWait(timeout);
        while (!AllRead(slot, previous))
        {
            if (!wait.Pause(cancellationToken))
            {
                continue;
            }

            ObjectDisposedException.ThrowIf(_gate.DisposeRequested, this);

            if (_isReaderAlive is not null)
            {
                ThrowIfAReaderDied(_isReaderAlive, slot, sequence, previous, wait);
            }

            if (wait.TimedOut)
            {
                ThrowIfStuck(slot, sequence, previous, timeout);
            }
        }
    }

    // Its own method: a lambda capturing the wait's locals would make every Enqueue allocate its closure on entry.
    private void ThrowIfStuck(int slot, long sequence, long previous, TimeSpan timeout)
    {
        int[] stuck = [.. Enumerable.Range(0, _ring.ReaderCount).Where(reader => !HasRead(slot, reader, previous))];
        if (stuck.Length > 0)
        {
            throw new BroadcastTimeoutException(
                $"Broadcast queue '{Name}': reader(s) {string.Join(", ", stuck)} did not read message chunk {previous} " +
                $"within {timeout.TotalMilliseconds:F0} ms; the writer needs its slot for chunk {sequence}.", stuck);
        }
    }

    private void ThrowIfAReaderDied(Func<int, bool> isReaderAlive, int slot, long sequence, long previous, in BroadcastWait wait)
    {
        for (int reader = 0; reader < _ring.ReaderCount; reader++)
        {
            // A process's stores reach shared memory before it is seen to have exited, so the flag is read again after
            // the liveness check: a reader that finished the chunk and then died is not reported, only one that left it unread.
            if (!HasRead(slot, reader, previous) && !isReaderAlive(reader) && !HasRead(slot, reader, previous))
            {
                throw new BroadcastPeerDiedException(
                    $"Broadcast queue '{Name}': reader {reader} died without reading message chunk {previous}; the writer " +
                    $"waited {wait.Elapsed.TotalMilliseconds:F0} ms to reuse its slot for chunk {sequence}.", reader);
            }
        }
    }

    private bool AllRead(int slot, long previous)
    {
        for (int reader = 0; reader < _ring.ReaderCount; reader++)
        {
            if (!HasRead(slot, reader, previous))
            {
                return false;
            }
        }

        return true;
    }

    // Acquire: the reader stored its flag (release) after copying the chunk out, so once the writer sees the flag, the
    // chunk's data stores that follow cannot overtake those copies. On Arm64 this is ldar (loads and stores may otherwise
    // be reordered); x86 never moves a store ahead of an earlier load, so there it only keeps the JIT from hoisting or
    // caching the load in the spin loop.
    private bool HasRead(int slot, int reader, long previous) => Volatile.Read(ref _ring.ReadSequence(slot, reader)) == previous;
}
