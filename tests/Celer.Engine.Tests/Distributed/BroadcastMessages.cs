using System.Buffers.Binary;
using System.Security.Cryptography;

namespace Celer.Engine.Tests.Distributed;

/// <summary>The messages the broadcast tests send: each one's content follows from its index and length, so a reader
/// (a thread or another process) can check every byte without being told what was sent.</summary>
internal static class BroadcastMessages
{
    public static byte[] Make(int index, int length)
    {
        var message = new byte[length];
        for (int i = 0; i < length; i++)
        {
            message[i] = (byte)((index * 131) + (i * 7) + (i >> 8));
        }

        // The index itself up front: a message delivered twice or out of order differs from the expected one at once.
        BinaryPrimitives.TryWriteInt32LittleEndian(message, index);
        return message;
    }

    /// <summary>Random lengths in [0, max], the same for every caller with the same seed.</summary>
    public static int[] Lengths(int seed, int count, int max)
    {
        var random = new Random(seed);
        return [.. Enumerable.Range(0, count).Select(_ => random.Next(max + 1))];
    }

    /// <summary>SHA-256 over each message's length and bytes, in order: what a reader process reports back.</summary>
    public static string Checksum(IEnumerable<byte[]> messages)
    {
        using var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        foreach (byte[] message in messages)
        {
            Append(hash, message);
        }

        return Convert.ToHexString(hash.GetHashAndReset());
    }

    public static void Append(IncrementalHash hash, byte[] message)
    {
        Span<byte> length = stackalloc byte[sizeof(int)];
        BinaryPrimitives.WriteInt32LittleEndian(length, message.Length);
        hash.AppendData(length);
        hash.AppendData(message);
    }
}
