using System.Text.Json;
using Celer.Tokenization.Decoders;
using Celer.Tokenization.Normalizers;
using Celer.Tokenization.PostProcessors;
using Celer.Tokenization.PreTokenizers;

namespace Celer.Tokenization;

/// <summary>
/// A Hugging Face <c>tokenizer.json</c> tokenizer, following the HF tokenizers pipeline:
/// added tokens are cut out → each remaining piece is normalized → pre-tokenized into words →
/// the model (BPE, WordPiece, WordLevel or Unigram) → the post-processor adds BOS/EOS or [CLS]/[SEP] and
/// token type ids. Decoding maps ids to token strings (added tokens first), drops special tokens
/// on request and runs the decoder chain. Thread-safe.
/// </summary>
/// <remarks>
/// The file's <c>truncation</c> and <c>padding</c> (non-null in some BERT-family files, e.g. max_length 256 and
/// pad-to-multiple-of-8 in all-MiniLM-L6-v2) are read past and never applied. That is what transformers does, and so
/// vLLM through it: a fast tokenizer's call sets the backend's truncation and padding from its own arguments, off by
/// default (<c>PreTrainedTokenizerFast.set_truncation_and_padding</c>). Only the tokenizers library's bare
/// <c>encode</c> applies them. Length limits are the engine's to enforce (max_model_len, truncate_prompt_tokens).
/// </remarks>
public sealed class Tokenizer
{
    private readonly TokenizerModel _model;
    private readonly AddedVocabulary _added;
    private readonly Normalizer? _normalizer;
    private readonly PreTokenizer? _preTokenizer;
    private readonly PostProcessor? _postProcessor;
    private readonly Decoder? _decoder;
    private readonly Dictionary<string, int> _addedByContent = new(StringComparer.Ordinal);
    private readonly string?[] _idToToken;
    private readonly bool[] _isSpecial;
    private readonly bool[] _isAdded;
    private readonly bool _byteLevelDecoding;

    // When the decoder is ByteLevel alone (GPT-2, Llama 3, Qwen): every token's bytes, concatenated, and where each
    // token's start, built on the first decode. Decoding is then one copy per token and one UTF-8 decode, with no
    // string per token; streaming decodes two windows per generated token.
    private readonly Lazy<(byte[] Bytes, int[] Offsets)>? _tokenBytes;

    private Tokenizer(TokenizerModel model, List<AddedToken> addedTokens, Normalizer? normalizer, PreTokenizer? preTokenizer, PostProcessor? postProcessor, Decoder? decoder)
    {
        _model = model;
        _normalizer = normalizer;
        _preTokenizer = preTokenizer;
        _postProcessor = postProcessor;
        _decoder = decoder;
        _added = new AddedVocabulary(addedTokens, normalizer);
        _byteLevelDecoding = decoder is ByteLevelDecoder || (decoder is SequenceDecoder seq && seq.Decoders.Any(d => d is ByteLevelDecoder));
        _tokenBytes = decoder is ByteLevelDecoder ? new Lazy<(byte[], int[])>(BuildTokenBytes) : null;

        int maxId = -1;
        foreach (var (_, id) in model.IdsAndTokens) maxId = Math.Max(maxId, id);
        foreach (var t in addedTokens) maxId = Math.Max(maxId, t.Id);
        VocabSize = maxId + 1;

        _idToToken = new string?[VocabSize];
        _isSpecial = new bool[VocabSize];
        _isAdded = new bool[VocabSize];
        foreach (var (token, id) in model.IdsAndTokens) _idToToken[id] = token;
        var specialContents = addedTokens.Where(t => t.Special).Select(t => t.Content).ToHashSet(StringComparer.Ordinal);
        foreach (var t in addedTokens)
        {
            // Added tokens take precedence over the model vocabulary for id → token, as in HF.
            _idToToken[t.Id] = t.Content;
            _isAdded[t.Id] = true;
            _addedByContent.TryAdd(t.Content, t.Id);
        }
        // HF decides "special" by content, so a model token that shares a special token's text is special too.
        for (int id = 0; id < VocabSize; id++)
            _isSpecial[id] = _idToToken[id] is { } s && specialContents.Contains(s);
    }

    /// <summary>Largest token id + 1, added tokens included.</summary>
    public int VocabSize { get; }

    public static Tokenizer FromFile(string tokenizerJsonPath) => FromFile(tokenizerJsonPath, null, null);

    /// <summary>
    /// tokenizer.json as transformers 5 runs it for a model with this tokenizer_config.json and config.json
    /// <c>model_type</c> (<see cref="TransformersPipeline"/>: some classes' pipelines are rebuilt, not read).
    /// </summary>
    public static Tokenizer FromFile(string tokenizerJsonPath, TokenizerConfig? config, string? modelType)
    {
        string json;
        try
        {
            json = File.ReadAllText(tokenizerJsonPath);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new TokenizerLoadException($"Cannot read tokenizer file '{Path.GetFileName(tokenizerJsonPath)}': {e.Message}", e);
        }
        return FromJson(json, config, modelType);
    }

    public static Tokenizer FromJson(string json, TokenizerConfig? config = null, string? modelType = null)
    {
        using var doc = TokenizerJson.Parse(json, "tokenizer.json");
        var root = TokenizerJson.Object(doc.RootElement, "$");
        var model = TokenizerModel.FromJson(TokenizerJson.Required(root, "model", "$"), "$.model");
        JsonElement? normalizerJson = TokenizerJson.Optional(root, "normalizer"), preTokenizerJson = TokenizerJson.Optional(root, "pre_tokenizer");
        var (normalizer, preTokenizer) = TransformersPipeline.For(normalizerJson, preTokenizerJson,
            Normalizer.Parse(normalizerJson, "$.normalizer"), PreTokenizer.Parse(preTokenizerJson, "$.pre_tokenizer"), config, modelType);
        var postProcessor = PostProcessor.Parse(TokenizerJson.Optional(root, "post_processor"), "$.post_processor");
        var decoder = Decoder.Parse(TokenizerJson.Optional(root, "decoder"), "$.decoder");
        var added = AddedVocabulary.Parse(TokenizerJson.Optional(root, "added_tokens"), "$.added_tokens");
        return new Tokenizer(model, added, normalizer, preTokenizer, postProcessor, decoder);
    }

    public int[] Encode(string text, bool addSpecialTokens = true)
    {
        ArgumentNullException.ThrowIfNull(text);
        var ids = new List<int>(text.Length / 3 + 4);
        EncodeSequence(text, ids);
        if (addSpecialTokens) _postProcessor?.Apply(ids);
        return ids.ToArray();
    }

    /// <summary>
    /// Input ids and token type ids for a text or a pair of texts, as HF's <c>encode(text, pair)</c> gives them: each
    /// text is encoded on its own, then the post-processor joins them (BERT: <c>[CLS] A [SEP] B [SEP]</c>, type ids 0
    /// up to the first [SEP], 1 after). Without a post-processor A has type id 0 and B type id 1.
    /// </summary>
    /// <param name="maxLength">
    /// HF's <c>truncation=True, max_length=k</c> (the longest_first strategy, from the right): the texts are cut so that
    /// they and the special tokens the post-processor adds take at most k tokens; of a pair, the longer text is cut first.
    /// </param>
    public EncodedInput EncodeWithTypes(string text, string? pair = null, bool addSpecialTokens = true, int? maxLength = null)
    {
        ArgumentNullException.ThrowIfNull(text);
        var processor = _postProcessor ?? PostProcessor.Default;
        var a = new List<int>(text.Length / 3 + 4);
        EncodeSequence(text, a);
        List<int>? b = null;
        if (pair is not null)
        {
            b = new List<int>(pair.Length / 3 + 4);
            EncodeSequence(pair, b);
        }
        if (maxLength is { } max)
        {
            var added = new List<int>();
            processor.Process([], b is null ? null : [], addSpecialTokens, added, null);
            if (max < added.Count)
                throw new ArgumentOutOfRangeException(nameof(maxLength), max, $"A maximum length of {max} leaves no room beside the {added.Count} special tokens the template adds.");
            TruncateLongestFirst(a, b, max - added.Count);
        }
        var ids = new List<int>(a.Count + (b?.Count ?? 0) + 8);
        var typeIds = new List<int>(ids.Capacity);
        processor.Process(a, b, addSpecialTokens, ids, typeIds);
        return new EncodedInput([.. ids], [.. typeIds]);
    }

    /// <summary>
    /// HF tokenizers' longest_first truncation to <paramref name="limit"/> tokens: a pair whose shorter text fits in half
    /// the room keeps it and cuts the longer to the rest; otherwise each gets half (the longer one the odd token).
    /// </summary>
    private static void TruncateLongestFirst(List<int> a, List<int>? b, int limit)
    {
        if (b is null)
        {
            if (a.Count > limit) a.RemoveRange(limit, a.Count - limit);
            return;
        }
        if (a.Count + b.Count <= limit) return;
        bool swap = a.Count > b.Count;
        int n1 = Math.Min(a.Count, b.Count), n2;
        n2 = n1 > limit ? n1 : Math.Max(n1, limit - n1);
        if (n1 + n2 > limit)
        {
            n1 = limit / 2;
            n2 = n1 + limit % 2;
        }
        (int keepA, int keepB) = swap ? (n2, n1) : (n1, n2);
        if (a.Count > keepA) a.RemoveRange(keepA, a.Count - keepA);
        if (b.Count > keepB) b.RemoveRange(keepB, b.Count - keepB);
    }

    /// <summary>One text through added tokens, normalizer, pre-tokenizer and model; no special tokens added.</summary>
    private void EncodeSequence(string text, List<int> ids)
    {
        var raw = new List<AddedVocabulary.Segment>();
        var normalized = new List<AddedVocabulary.Segment>();
        var words = new List<PreToken>();
        _added.SplitRaw(text, raw);
        foreach (var segment in raw)
        {
            if (segment.Token is { } rawToken)
            {
                ids.Add(rawToken.Id);
                continue;
            }
            var piece = _normalizer?.Normalize(segment.Text) ?? segment.Text;
            normalized.Clear();
            _added.SplitNormalized(piece, segment.AtStart, normalized);
            foreach (var n in normalized)
            {
                if (n.Token is { } token)
                {
                    ids.Add(token.Id);
                    continue;
                }
                words.Clear();
                if (_preTokenizer is null) words.Add(new PreToken(n.Text, n.AtStart));
                else _preTokenizer.PreTokenize(new PreToken(n.Text, n.AtStart), words);
                foreach (var w in words) _model.Tokenize(w.Text, ids);
            }
        }
    }

    public string Decode(ReadOnlySpan<int> ids, bool skipSpecialTokens = true)
    {
        if (_tokenBytes is not null)
        {
            return DecodeByteLevel(ids, skipSpecialTokens);
        }

        var tokens = new List<string>(ids.Length);
        foreach (var id in ids)
        {
            // Unknown ids are dropped, as HF does.
            if ((uint)id >= (uint)VocabSize || _idToToken[id] is not { } token) continue;
            if (skipSpecialTokens && _isSpecial[id]) continue;
            tokens.Add(token);
        }
        if (_decoder is null) return string.Join(' ', tokens);
        return string.Concat(_decoder.DecodeChain(tokens));
    }

    /// <summary>
    /// <see cref="Decode"/> for a lone ByteLevel decoder: the tokens' bytes (<see cref="ByteLevel.AppendBytes"/> of
    /// each, computed once) joined, then one lossy UTF-8 decode, which is what the decoder does with the strings.
    /// </summary>
    private string DecodeByteLevel(ReadOnlySpan<int> ids, bool skipSpecialTokens)
    {
        (byte[] bytes, int[] offsets) = _tokenBytes!.Value;
        int length = 0;
        foreach (int id in ids)
        {
            if ((uint)id < (uint)VocabSize && _idToToken[id] is not null && !(skipSpecialTokens && _isSpecial[id]))
            {
                length += offsets[id + 1] - offsets[id];
            }
        }

        byte[]? rented = length > 1024 ? System.Buffers.ArrayPool<byte>.Shared.Rent(length) : null;
        Span<byte> joined = rented ?? stackalloc byte[length];
        int at = 0;
        foreach (int id in ids)
        {
            // Unknown ids are dropped, as HF does.
            if ((uint)id < (uint)VocabSize && _idToToken[id] is not null && !(skipSpecialTokens && _isSpecial[id]))
            {
                ReadOnlySpan<byte> token = bytes.AsSpan(offsets[id], offsets[id + 1] - offsets[id]);
                token.CopyTo(joined[at..]);
                at += token.Length;
            }
        }

        string text = System.Text.Encoding.UTF8.GetString(joined[..length]);
        if (rented is not null)
        {
            System.Buffers.ArrayPool<byte>.Shared.Return(rented);
        }

        return text;
    }

    private (byte[] Bytes, int[] Offsets) BuildTokenBytes()
    {
        var bytes = new List<byte>();
        var offsets = new int[VocabSize + 1];
        for (int id = 0; id < VocabSize; id++)
        {
            offsets[id] = bytes.Count;
            if (_idToToken[id] is { } token)
            {
                ByteLevel.AppendBytes(token, bytes);
            }
        }

        offsets[VocabSize] = bytes.Count;
        return ([.. bytes], offsets);
    }

    /// <summary>
    /// Each token's bytes as they appear inside decoded text (structured outputs match grammars over these bytes): the
    /// raw bytes for ByteLevel decoding and for byte-fallback tokens (<c>&lt;0x0A&gt;</c> is the one byte 0x0A, not the
    /// replacement character a lone byte decodes to), else the token decoded after another token, so SentencePiece's
    /// ▁ is the space it is mid-text and the leading-space strip of the first token does not apply. Null for special
    /// tokens and unused ids: a grammar never produces them.
    /// </summary>
    public byte[]?[] TokenBytesInText()
    {
        const string Before = "a";
        bool byteFallback = _decoder is ByteFallbackDecoder || (_decoder is SequenceDecoder seq && seq.Decoders.Any(d => d is ByteFallbackDecoder));
        var result = new byte[]?[VocabSize];
        var bytes = new List<byte>();
        for (int id = 0; id < VocabSize; id++)
        {
            if (_idToToken[id] is not { } token || _isSpecial[id])
            {
                continue;
            }

            if (_byteLevelDecoding)
            {
                bytes.Clear();
                ByteLevel.AppendBytes(token, bytes);
                result[id] = [.. bytes];
            }
            else if (byteFallback && ByteFallbackDecoder.TryParseByteToken(token, out byte value))
            {
                result[id] = [value];
            }
            else if (_decoder is null)
            {
                result[id] = System.Text.Encoding.UTF8.GetBytes(token);
            }
            else
            {
                string text = string.Concat(_decoder.DecodeChain([Before, token]));
                result[id] = System.Text.Encoding.UTF8.GetBytes(text.StartsWith(Before, StringComparison.Ordinal) ? text[Before.Length..] : text);
            }
        }

        return result;
    }

    public string? IdToToken(int id) => (uint)id < (uint)VocabSize ? _idToToken[id] : null;

    public int? TokenToId(string token) =>
        _addedByContent.TryGetValue(token, out var id) ? id : _model.Vocab.TryGetValue(token, out id) ? id : null;

    public bool IsSpecialToken(int id) => (uint)id < (uint)VocabSize && _isSpecial[id];

    /// <summary>True for ids from <c>added_tokens</c>, special or not.</summary>
    internal bool IsAddedToken(int id) => (uint)id < (uint)VocabSize && _isAdded[id];

    /// <summary>
    /// True when decoding <paramref name="ids"/> ends inside a UTF-8 character that more tokens
    /// could complete: trailing byte-level bytes or byte-fallback &lt;0xNN&gt; tokens that form an
    /// incomplete sequence. Streaming holds such text back instead of emitting U+FFFD.
    /// </summary>
    internal bool EndsWithIncompleteCharacter(ReadOnlySpan<int> ids, bool skipSpecialTokens)
    {
        // A UTF-8 character is at most 4 bytes, so the last 4 decodable tokens decide.
        var tail = new List<byte>();
        var tokens = new List<string>();
        for (int i = ids.Length - 1; i >= 0 && tokens.Count < 4; i--)
        {
            int id = ids[i];
            if ((uint)id >= (uint)VocabSize || _idToToken[id] is not { } token) continue;
            if (skipSpecialTokens && _isSpecial[id]) continue;
            tokens.Insert(0, token);
        }
        foreach (var t in tokens)
        {
            if (_byteLevelDecoding) ByteLevel.AppendBytes(t, tail);
            else if (ByteFallbackDecoder.TryParseByteToken(t, out var b)) tail.Add(b);
            else tail.Clear();
        }
        return ByteLevel.EndsWithIncompleteUtf8(System.Runtime.InteropServices.CollectionsMarshal.AsSpan(tail));
    }
}
