using System.Text;

namespace Celer.Tokenization;

/// <summary>
/// Streaming detokenization the way vLLM does it: each step decodes a short window twice —
/// [prefix offset, read offset) and [prefix offset, end) — and emits the difference. Decoding a
/// window rather than single tokens keeps what depends on neighbours right (SentencePiece's
/// leading-space strip, byte-level characters split across tokens). Text that ends inside a
/// UTF-8 character is held back until the character is complete, so no U+FFFD is emitted for
/// a character split across tokens; a byte sequence that can never become valid is emitted.
/// </summary>
public sealed class IncrementalDetokenizer
{
    // vLLM's INITIAL_INCREMENTAL_DETOKENIZATION_OFFSET: prompt tokens kept as context for the first window.
    private const int InitialPrefixTokens = 5;

    private readonly Tokenizer _tokenizer;
    private readonly bool _skipSpecialTokens;
    private readonly bool _spacesBetweenSpecialTokens;
    private readonly List<int> _ids;
    private readonly StringBuilder _output = new();
    private int _prefixOffset;
    private int _readOffset;

    /// <param name="spacesBetweenSpecialTokens">
    /// When special tokens are kept (<paramref name="skipSpecialTokens"/> false), put a space
    /// between a special token and the text around it, as transformers' slow decode does.
    /// </param>
    public IncrementalDetokenizer(Tokenizer t, IReadOnlyList<int> promptTokenIds, bool skipSpecialTokens = true, bool spacesBetweenSpecialTokens = true)
    {
        ArgumentNullException.ThrowIfNull(t);
        ArgumentNullException.ThrowIfNull(promptTokenIds);
        _tokenizer = t;
        _skipSpecialTokens = skipSpecialTokens;
        _spacesBetweenSpecialTokens = spacesBetweenSpecialTokens;
        _ids = new List<int>(promptTokenIds.Count + 64);
        _ids.AddRange(promptTokenIds);
        _readOffset = _ids.Count;
        _prefixOffset = Math.Max(_ids.Count - InitialPrefixTokens, 0);
    }

    /// <summary>Everything emitted so far.</summary>
    public string Output => _output.ToString();

    /// <summary>Adds one generated token; returns the text it completes (possibly empty).</summary>
    public string Append(int tokenId)
    {
        _ids.Add(tokenId);
        var all = System.Runtime.InteropServices.CollectionsMarshal.AsSpan(_ids);
        var prefixText = DecodeWindow(all[_prefixOffset.._readOffset]);
        var window = all[_prefixOffset..];
        var newText = DecodeWindow(window);
        if (newText.Length <= prefixText.Length) return "";
        if (newText[^1] == '\uFFFD' && _tokenizer.EndsWithIncompleteCharacter(window, _skipSpecialTokens)) return "";

        var delta = newText[prefixText.Length..];
        _prefixOffset = _readOffset;
        _readOffset = _ids.Count;
        _output.Append(delta);
        return delta;
    }

    private string DecodeWindow(ReadOnlySpan<int> ids)
    {
        if (_skipSpecialTokens || !_spacesBetweenSpecialTokens) return _tokenizer.Decode(ids, _skipSpecialTokens);

        var parts = new List<string>();
        int runStart = 0;
        for (int i = 0; i < ids.Length; i++)
        {
            if (!_tokenizer.IsSpecialToken(ids[i])) continue;
            if (runStart < i) parts.Add(_tokenizer.Decode(ids[runStart..i], skipSpecialTokens: false));
            parts.Add(_tokenizer.Decode(ids.Slice(i, 1), skipSpecialTokens: false));
            runStart = i + 1;
        }
        if (runStart < ids.Length) parts.Add(_tokenizer.Decode(ids[runStart..], skipSpecialTokens: false));
        return string.Join(' ', parts);
    }
}
