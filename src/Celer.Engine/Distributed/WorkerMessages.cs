using System.Buffers;
using System.Buffers.Binary;
using System.Runtime.InteropServices;
using System.Text.Json;
using System.Text.Json.Serialization;
using Celer.Models.Architectures;
using Celer.Models.Backend;
using Celer.Models.Weights;

namespace Celer.Engine.Distributed;

/// <summary>
/// What rank 0 tells its worker processes before they serve: the engine's arguments and what rank 0 derived from them
/// (sizes every rank's buffers must share, the dtypes), and where the group's collectives meet.
/// </summary>
internal sealed record WorkerPlan(
    EngineArgs Args, int WorldSize, string Collectives, int MaxModelLen, int MaxNumTokens, int MaxLogitsRows, DType DType, DType? KvCacheDType);

/// <summary>The plan's JSON, generated at build time (no reflection: the engine is trimming- and AOT-safe).</summary>
[JsonSerializable(typeof(WorkerPlan))]
internal sealed partial class WorkerPlanJson : JsonSerializerContext;

/// <summary>
/// The messages of the broadcast queue from rank 0 to its workers, one kind byte first: the plan (JSON, once), the KV
/// cache's size (once, after rank 0 has measured its memory), then a <see cref="PeerCall"/> per step. A step's batch is a
/// few int arrays, written as raw little-endian words: at batch 256 a decode step's message is a few KB and encodes in
/// microseconds, beside milliseconds of step.
/// </summary>
internal static class WorkerMessages
{
    private const byte Plan = 1, KvCache = 2, Forward = 3, ForwardToDevice = 4, CaptureGraphs = 5;

    public static byte[] EncodePlan(WorkerPlan plan)
    {
        var buffer = new ArrayBufferWriter<byte>();
        buffer.Write([Plan]);
        using (var json = new Utf8JsonWriter(buffer))
        {
            JsonSerializer.Serialize(json, plan, WorkerPlanJson.Default.WorkerPlan);
        }

        return buffer.WrittenSpan.ToArray();
    }

    public static byte[] EncodeKvCache(int numBlocks)
    {
        var message = new byte[5];
        message[0] = KvCache;
        BinaryPrimitives.WriteInt32LittleEndian(message.AsSpan(1), numBlocks);
        return message;
    }

    public static void Encode(PeerCall call, ArrayBufferWriter<byte> buffer)
    {
        switch (call)
        {
            case PeerCall.Forward forward:
                buffer.Write([Forward]);
                WriteBatch(forward.Batch, buffer);
                break;
            case PeerCall.ForwardToDevice forward:
                buffer.Write([ForwardToDevice]);
                WriteBatch(forward.Batch, buffer);
                break;
            case PeerCall.CaptureGraphs:
                buffer.Write([CaptureGraphs]);
                break;
            default:
                throw new ArgumentException($"No worker message carries a {call.GetType().Name}.", nameof(call));
        }
    }

    public static WorkerPlan DecodePlan(ReadOnlySpan<byte> message) =>
        JsonSerializer.Deserialize(Kind(message, Plan, "the plan"), WorkerPlanJson.Default.WorkerPlan) ?? throw new InvalidDataException("The worker plan is empty.");

    public static int DecodeKvCache(ReadOnlySpan<byte> message) =>
        BinaryPrimitives.ReadInt32LittleEndian(Kind(message, KvCache, "the KV cache's size"));

    public static PeerCall DecodeCall(ReadOnlySpan<byte> message)
    {
        if (message.IsEmpty)
        {
            throw new InvalidDataException("An empty worker message.");
        }

        var reader = new SpanReader(message[1..]);
        return message[0] switch
        {
            Forward => new PeerCall.Forward(ReadBatch(ref reader)),
            ForwardToDevice => new PeerCall.ForwardToDevice(ReadBatch(ref reader)),
            CaptureGraphs => new PeerCall.CaptureGraphs(),
            _ => throw new InvalidDataException($"Worker message kind {message[0]} is not a step."),
        };
    }

    private static ReadOnlySpan<byte> Kind(ReadOnlySpan<byte> message, byte kind, string what) =>
        !message.IsEmpty && message[0] == kind ? message[1..] : throw new InvalidDataException($"The worker expected {what}, got message kind {(message.IsEmpty ? "(empty)" : message[0])}.");

    private static void WriteBatch(ForwardBatch batch, ArrayBufferWriter<byte> buffer)
    {
        WriteInts(batch.TokenIds, buffer);
        WriteInts(batch.Positions, buffer);
        WriteInts(batch.SlotMapping, buffer);
        WriteInts(batch.QueryStartLoc, buffer);
        WriteInts(batch.SeqLens, buffer);
        WriteInts(batch.BlockTables, buffer);
        WriteInts([batch.MaxBlocksPerSeq], buffer);
        WriteInts(batch.LogitsRows, buffer);
        WriteInts(batch.PendingTokens, buffer);
        WriteInts(batch.TokenTypeIds, buffer);
    }

    private static ForwardBatch ReadBatch(ref SpanReader reader) => new()
    {
        TokenIds = reader.Ints(),
        Positions = reader.Ints(),
        SlotMapping = reader.Ints(),
        QueryStartLoc = reader.Ints(),
        SeqLens = reader.Ints(),
        BlockTables = reader.Ints(),
        MaxBlocksPerSeq = reader.Ints() is [int maxBlocks] ? maxBlocks : throw new InvalidDataException("A batch's block-table width is one word."),
        LogitsRows = reader.Ints(),
        PendingTokens = reader.Ints(),
        TokenTypeIds = reader.IntsOrNull(),
    };

    /// <summary>A length word (−1 for null), then the ints.</summary>
    private static void WriteInts(int[]? values, ArrayBufferWriter<byte> buffer)
    {
        Span<byte> length = buffer.GetSpan(4);
        BinaryPrimitives.WriteInt32LittleEndian(length, values?.Length ?? -1);
        buffer.Advance(4);
        if (values is not null)
        {
            // Rank 0 and its workers share one host (the shared-memory queue), so its byte order is theirs.
            buffer.Write(MemoryMarshal.AsBytes(values.AsSpan()));
        }
    }

    private ref struct SpanReader(ReadOnlySpan<byte> data)
    {
        private ReadOnlySpan<byte> _rest = data;

        public int[] Ints() => IntsOrNull() ?? throw new InvalidDataException("A batch array is missing.");

        public int[]? IntsOrNull()
        {
            int length = BinaryPrimitives.ReadInt32LittleEndian(Take(4));
            if (length < 0)
            {
                return length == -1 ? null : throw new InvalidDataException($"A batch array of length {length}.");
            }

            return MemoryMarshal.Cast<byte, int>(Take(checked(length * 4))).ToArray();
        }

        private ReadOnlySpan<byte> Take(int bytes)
        {
            if (bytes > _rest.Length)
            {
                throw new InvalidDataException("A worker message ends inside a batch.");
            }

            ReadOnlySpan<byte> taken = _rest[..bytes];
            _rest = _rest[bytes..];
            return taken;
        }
    }
}
