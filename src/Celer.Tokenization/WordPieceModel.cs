using System.Text.Json;

namespace Celer.Tokenization;

/// <summary>
/// HF's WordPiece model (models/wordpiece/mod.rs), BERT's subword tokenizer: a word is cut greedily, longest vocabulary
/// match first, every piece after the first looked up with the continuing-subword prefix ("##"). A word that cannot
/// be cut all the way, or is longer than <c>max_input_chars_per_word</c> characters, becomes the one unk token.
/// </summary>
internal sealed class WordPieceModel : TokenizerModel
{
    private readonly Dictionary<string, int> _vocab;
    private readonly Dictionary<string, int>.AlternateLookup<ReadOnlySpan<char>> _lookup;
    private readonly string _unkToken;
    private readonly int? _unkId;
    private readonly string _prefix;
    private readonly int _maxInputCharsPerWord;

    private WordPieceModel(Dictionary<string, int> vocab, string unkToken, string prefix, int maxInputCharsPerWord)
    {
        _vocab = vocab;
        _lookup = vocab.GetAlternateLookup<ReadOnlySpan<char>>();
        _unkToken = unkToken;
        _unkId = vocab.TryGetValue(unkToken, out int unk) ? unk : null;
        _prefix = prefix;
        _maxInputCharsPerWord = maxInputCharsPerWord;
    }

    public override IReadOnlyDictionary<string, int> Vocab => _vocab;

    public static WordPieceModel Parse(JsonElement model, string path)
    {
        // Missing settings take HF's WordPieceBuilder defaults.
        int maxChars = TokenizerJson.Int(model, "max_input_chars_per_word", path, 100);
        if (maxChars < 0) throw new TokenizerLoadException($"'{path}.max_input_chars_per_word' must not be negative.");
        return new WordPieceModel(ParseVocab(model, path),
            TokenizerJson.OptionalString(model, "unk_token", path) ?? "[UNK]",
            TokenizerJson.OptionalString(model, "continuing_subword_prefix", path) ?? "##",
            maxChars);
    }

    public override void Tokenize(string word, List<int> output)
    {
        if (word.Length == 0) return;
        // Characters are code points, as Rust counts them; there are never more of them than UTF-16 units.
        if (word.Length > _maxInputCharsPerWord && CodePoints(word) > _maxInputCharsPerWord)
        {
            output.Add(UnkId());
            return;
        }

        int mark = output.Count;
        char[]? rented = null;
        int needed = _prefix.Length + word.Length;
        Span<char> buffer = needed <= 256 ? stackalloc char[256] : (rented = System.Buffers.ArrayPool<char>.Shared.Rent(needed));
        _prefix.CopyTo(buffer);
        try
        {
            int start = 0;
            while (start < word.Length)
            {
                // The longest piece from start that is in the vocabulary; shrink by one code point at a time.
                int end = word.Length, id = -1;
                while (start < end)
                {
                    scoped ReadOnlySpan<char> piece;
                    if (start == 0)
                    {
                        piece = word.AsSpan(0, end);
                    }
                    else
                    {
                        word.AsSpan(start, end - start).CopyTo(buffer[_prefix.Length..]);
                        piece = buffer[..(_prefix.Length + end - start)];
                    }
                    if (_lookup.TryGetValue(piece, out id)) break;
                    id = -1;
                    end -= end - start >= 2 && char.IsLowSurrogate(word[end - 1]) && char.IsHighSurrogate(word[end - 2]) ? 2 : 1;
                }
                if (id < 0)
                {
                    // No piece fits at start: the whole word is unknown, not just this part.
                    output.RemoveRange(mark, output.Count - mark);
                    output.Add(UnkId());
                    return;
                }
                output.Add(id);
                start = end;
            }
        }
        finally
        {
            if (rented is not null) System.Buffers.ArrayPool<char>.Shared.Return(rented);
        }
    }

    private static int CodePoints(string word)
    {
        int n = 0;
        for (int i = 0; i < word.Length; i++, n++)
            if (char.IsHighSurrogate(word[i]) && i + 1 < word.Length && char.IsLowSurrogate(word[i + 1])) i++;
        return n;
    }

    /// <summary>HF fails the encode when it needs an unk token the vocabulary lacks; so does this.</summary>
    private int UnkId() => _unkId ?? throw new InvalidOperationException(
        $"WordPiece needs its unk token '{_unkToken}' for an unknown word, but the vocabulary has no such token.");
}
