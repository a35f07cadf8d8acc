using System.Buffers.Binary;
using System.Collections.Concurrent;
using System.Globalization;
using System.Text;
using System.Text.Json;

namespace Celer.Tokenization.Normalizers;

/// <summary>
/// SentencePiece's normalizer as HF runs it (the spm_precompiled crate, 0.1.4, and normalizers/precompiled.rs):
/// <c>precompiled_charsmap</c> is the model's normalization rules compiled by SentencePiece — for nmt_nfkc models
/// (T5, XLM-RoBERTa, mT5) NFKC plus the removal of control characters and the mapping of other spaces to " " — as a
/// Darts double-array trie over UTF-8 whose values are offsets into a blob of NUL-terminated replacement strings.
/// </summary>
/// <remarks>
/// The text is taken an extended grapheme cluster at a time. A cluster shorter than 6 UTF-8 bytes is looked up whole;
/// if any prefix of it is in the trie, the whole cluster becomes the replacement of the <em>shortest</em> such prefix
/// (Darts lists matches shortest first and HF takes the first), so the rest of the cluster is dropped: "ｅ\u0301" is
/// "e", not "é". Otherwise, and for longer clusters, each character is looked up on its own and kept when it has no
/// entry. This is not SentencePiece's own longest-match loop, but it is what HF tokenizers (and so transformers and
/// vLLM) give, and matching them is the point.
/// </remarks>
internal sealed class PrecompiledNormalizer : Normalizer
{
    // The cluster length (in UTF-8 bytes) under which HF looks a cluster up whole.
    private const int WholeClusterBytes = 6;

    private readonly uint[] _trie;
    private readonly byte[] _normalized;
    private readonly ConcurrentDictionary<int, string> _replacements = new();
    // Each ASCII character's replacement (null: none), since ASCII next to ASCII is always a cluster of its own.
    private readonly string?[] _ascii = new string?[128];

    private PrecompiledNormalizer(uint[] trie, byte[] normalized)
    {
        _trie = trie;
        _normalized = normalized;
        for (int c = 1; c < 128; c++) _ascii[c] = Transform(((char)c).ToString());
    }

    public static PrecompiledNormalizer Parse(JsonElement json, string path)
    {
        var base64 = TokenizerJson.String(json, "precompiled_charsmap", path);
        byte[] map;
        try
        {
            map = Convert.FromBase64String(base64);
        }
        catch (FormatException e)
        {
            throw new TokenizerLoadException($"'{path}.precompiled_charsmap' is not valid base64.", e);
        }
        return FromCharsmap(map, path);
    }

    /// <summary>The charsmap's layout: u32 trie size in bytes, the trie's u32 units, then the replacement strings.</summary>
    internal static PrecompiledNormalizer FromCharsmap(byte[] map, string path)
    {
        if (map.Length < 4)
            throw new TokenizerLoadException($"'{path}.precompiled_charsmap' is too short to hold its trie size.");
        uint trieBytes = BinaryPrimitives.ReadUInt32LittleEndian(map);
        long units = trieBytes / 4;
        if (4 + units * 4 > map.Length)
            throw new TokenizerLoadException($"'{path}.precompiled_charsmap' declares a {trieBytes}-byte trie but holds {map.Length - 4} bytes.");
        var trie = new uint[units];
        for (int i = 0; i < units; i++) trie[i] = BinaryPrimitives.ReadUInt32LittleEndian(map.AsSpan(4 + i * 4));
        // A size that is not a multiple of 4 leaves its last bytes to the strings, as the crate reads it.
        var normalized = map[(int)(4 + units * 4)..];
        try
        {
            _ = new UTF8Encoding(false, throwOnInvalidBytes: true).GetCharCount(normalized);
        }
        catch (DecoderFallbackException e)
        {
            throw new TokenizerLoadException($"'{path}.precompiled_charsmap' has replacement strings that are not valid UTF-8.", e);
        }
        if (trie.Length == 0)
            throw new TokenizerLoadException($"'{path}.precompiled_charsmap' has an empty trie.");
        return new PrecompiledNormalizer(trie, normalized);
    }

    public override string Normalize(string text)
    {
        StringBuilder? sb = null;
        int copied = 0;
        for (int i = 0; i < text.Length;)
        {
            char c = text[i];
            int length;
            string? replacement;
            if (c < 0x80 && (i + 1 == text.Length || (text[i + 1] < 0x80 && !(c == '\r' && text[i + 1] == '\n'))))
            {
                // ASCII followed by ASCII (but not CR LF) or by nothing: a one-character cluster.
                length = 1;
                replacement = c == 0 ? null : _ascii[c];
                if (replacement is null)
                {
                    i++;
                    continue;
                }
            }
            else
            {
                length = StringInfo.GetNextTextElementLength(text.AsSpan(i));
                var cluster = text.AsSpan(i, length);
                replacement = Encoding.UTF8.GetByteCount(cluster) < WholeClusterBytes ? Transform(cluster) : null;
                if (replacement is null)
                {
                    replacement = TransformEach(cluster);
                    if (replacement is null)
                    {
                        i += length;
                        continue;
                    }
                }
            }
            sb ??= new StringBuilder(text.Length + 16);
            sb.Append(text, copied, i - copied).Append(replacement);
            i += length;
            copied = i;
        }
        if (sb is null) return text;
        return sb.Append(text, copied, text.Length - copied).ToString();
    }

    /// <summary>Each character of the cluster replaced or kept; null when none has a replacement.</summary>
    private string? TransformEach(ReadOnlySpan<char> cluster)
    {
        StringBuilder? sb = null;
        int copied = 0;
        for (int i = 0; i < cluster.Length;)
        {
            int length = char.IsHighSurrogate(cluster[i]) && i + 1 < cluster.Length && char.IsLowSurrogate(cluster[i + 1]) ? 2 : 1;
            if (Transform(cluster.Slice(i, length)) is { } replacement)
            {
                sb ??= new StringBuilder(cluster.Length + 8);
                sb.Append(cluster[copied..i]).Append(replacement);
                copied = i + length;
            }
            i += length;
        }
        return sb?.Append(cluster[copied..]).ToString();
    }

    /// <summary>
    /// The replacement of the shortest prefix of <paramref name="chunk"/>'s UTF-8 bytes that the trie has, or null. As
    /// in Darts' common prefix search, a NUL byte ends the key.
    /// </summary>
    internal string? Transform(ReadOnlySpan<char> chunk)
    {
        Span<byte> utf8 = stackalloc byte[4];
        long pos = 0;
        uint unit = _trie[0];
        pos ^= Offset(unit);
        foreach (var rune in chunk.EnumerateRunes())
        {
            int n = rune.EncodeToUtf8(utf8);
            for (int k = 0; k < n; k++)
            {
                byte b = utf8[k];
                if (b == 0) return null;
                pos ^= b;
                if ((ulong)pos >= (ulong)_trie.Length) return null;
                unit = _trie[pos];
                if ((unit & 0x800000FFu) != b) return null;
                pos ^= Offset(unit);
                if (((unit >> 8) & 1) == 1)
                {
                    if ((ulong)pos >= (ulong)_trie.Length) return null;
                    return Replacement((int)(_trie[pos] & 0x7FFFFFFFu));
                }
            }
        }
        return null;
    }

    private static long Offset(uint unit) => (long)(unit >> 10) << (int)((unit & (1u << 9)) >> 6);

    /// <summary>The NUL-terminated string at <paramref name="index"/> of the blob.</summary>
    private string Replacement(int index) => _replacements.GetOrAdd(index, i =>
    {
        if (i >= _normalized.Length) return "";
        int end = Array.IndexOf(_normalized, (byte)0, i);
        return Encoding.UTF8.GetString(_normalized, i, (end < 0 ? _normalized.Length : end) - i);
    });
}
