using System.Globalization;
using System.Text;
using System.Text.Json;
using Celer.Tokenization.PreTokenizers;

namespace Celer.Tokenization.Decoders;

/// <summary>
/// A tokenizer.json decoder, HF's <c>decode_chain</c>: token strings in, token strings out;
/// the tokenizer concatenates what the last decoder returns.
/// </summary>
internal abstract class Decoder
{
    public abstract List<string> DecodeChain(List<string> tokens);

    public static Decoder? Parse(JsonElement? json, string path)
    {
        if (json is not { } j) return null;
        var type = TokenizerJson.Type(j, path);
        return type switch
        {
            "Sequence" => new SequenceDecoder(TokenizerJson.Array(j, "decoders", path).EnumerateArray()
                .Select((d, i) => Parse(d, $"{path}.decoders[{i}]")!).ToArray()),
            "ByteLevel" => new ByteLevelDecoder(),
            "Replace" => new ReplaceDecoder(UnicodeRegex.Parse(TokenizerJson.Required(j, "pattern", path), $"{path}.pattern"),
                TokenizerJson.String(j, "content", path)),
            "ByteFallback" => new ByteFallbackDecoder(),
            "Fuse" => new FuseDecoder(),
            "Strip" => StripDecoder.Parse(j, path),
            "Metaspace" => new MetaspaceDecoder(MetaspacePreTokenizer.ParseCommon(j, path)),
            "WordPiece" => WordPieceDecoder.Parse(j, path),
            _ => throw new TokenizerLoadException($"Decoder type '{type}' at '{path}' is not supported."),
        };
    }
}

internal sealed class SequenceDecoder(Decoder[] decoders) : Decoder
{
    public IReadOnlyList<Decoder> Decoders => decoders;

    public override List<string> DecodeChain(List<string> tokens)
    {
        foreach (var d in decoders) tokens = d.DecodeChain(tokens);
        return tokens;
    }
}

/// <summary>Maps byte-level characters back to bytes and decodes all tokens as one UTF-8 string (lossy).</summary>
internal sealed class ByteLevelDecoder : Decoder
{
    public override List<string> DecodeChain(List<string> tokens)
    {
        var bytes = new List<byte>();
        foreach (var t in tokens) ByteLevel.AppendBytes(t, bytes);
        return [Encoding.UTF8.GetString(System.Runtime.InteropServices.CollectionsMarshal.AsSpan(bytes))];
    }
}

internal sealed class ReplaceDecoder(UnicodeRegex pattern, string content) : Decoder
{
    public override List<string> DecodeChain(List<string> tokens) => tokens.ConvertAll(t => pattern.Replace(t, content));
}

/// <summary>
/// Turns runs of <c>&lt;0xNN&gt;</c> tokens back into text. A run that is not valid UTF-8
/// becomes one U+FFFD per byte, as in HF (not the maximal-subpart rule of lossy decoding).
/// </summary>
internal sealed class ByteFallbackDecoder : Decoder
{
    public override List<string> DecodeChain(List<string> tokens)
    {
        var output = new List<string>(tokens.Count);
        var pending = new List<byte>();
        foreach (var token in tokens)
        {
            if (TryParseByteToken(token, out var b))
            {
                pending.Add(b);
                continue;
            }
            Flush(pending, output);
            output.Add(token);
        }
        Flush(pending, output);
        return output;
    }

    internal static bool TryParseByteToken(string token, out byte value)
    {
        value = 0;
        return token.Length == 6 && token.StartsWith("<0x", StringComparison.Ordinal) && token[5] == '>'
            && byte.TryParse(token.AsSpan(3, 2), NumberStyles.AllowHexSpecifier, CultureInfo.InvariantCulture, out value);
    }

    private static readonly UTF8Encoding StrictUtf8 = new(encoderShouldEmitUTF8Identifier: false, throwOnInvalidBytes: true);

    private static void Flush(List<byte> pending, List<string> output)
    {
        if (pending.Count == 0) return;
        try
        {
            output.Add(StrictUtf8.GetString(pending.ToArray()));
        }
        catch (DecoderFallbackException)
        {
            for (int i = 0; i < pending.Count; i++) output.Add("\uFFFD");
        }
        pending.Clear();
    }
}

internal sealed class FuseDecoder : Decoder
{
    public override List<string> DecodeChain(List<string> tokens) => [string.Concat(tokens)];
}

/// <summary>Removes up to <c>start</c> leading and <c>stop</c> trailing copies of a character from each token.</summary>
internal sealed class StripDecoder(char content, int start, int stop) : Decoder
{
    public static StripDecoder Parse(JsonElement json, string path)
    {
        var content = TokenizerJson.String(json, "content", path);
        if (content.Length != 1) throw new TokenizerLoadException($"'{path}.content' must be a single character.");
        int start = TokenizerJson.Int(json, "start", path, 0), stop = TokenizerJson.Int(json, "stop", path, 0);
        if (start < 0 || stop < 0) throw new TokenizerLoadException($"'{path}' start and stop must not be negative.");
        return new StripDecoder(content[0], start, stop);
    }

    public override List<string> DecodeChain(List<string> tokens) => tokens.ConvertAll(t =>
    {
        int from = 0;
        while (from < start && from < t.Length && t[from] == content) from++;
        int to = t.Length;
        while (t.Length - to < stop && to > from && t[to - 1] == content) to--;
        return t[from..to];
    });
}

/// <summary>"▁" back to spaces; the first token loses its dummy prefix unless the scheme is "never".</summary>
internal sealed class MetaspaceDecoder((char Replacement, PrependScheme Scheme) options) : Decoder
{
    public override List<string> DecodeChain(List<string> tokens)
    {
        var output = new List<string>(tokens.Count);
        for (int i = 0; i < tokens.Count; i++)
        {
            var sb = new StringBuilder(tokens[i].Length);
            foreach (var c in tokens[i])
            {
                if (c != options.Replacement) sb.Append(c);
                else if (i != 0 || options.Scheme == PrependScheme.Never) sb.Append(' ');
            }
            output.Add(sb.ToString());
        }
        return output;
    }
}
