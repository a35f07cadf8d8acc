using System.Text.Json;

namespace Celer.Tokenization;

/// <summary>
/// The model stage of HF's pipeline (tokenizer.json's <c>model</c>): one pre-tokenized word in, its token ids out.
/// BPE for generative models; WordPiece (and WordLevel) for BERT-family embedding models; Unigram for SentencePiece's
/// unigram models (XLM-RoBERTa, T5, bge-m3, multilingual-e5).
/// </summary>
internal abstract class TokenizerModel
{
    public abstract IReadOnlyDictionary<string, int> Vocab { get; }

    /// <summary>
    /// Every id with its token, for id → token. The same pairs as <see cref="Vocab"/> unless a token is listed twice,
    /// which only Unigram's list allows: there both ids decode to it, while the token encodes to the later one.
    /// </summary>
    public virtual IEnumerable<KeyValuePair<string, int>> IdsAndTokens => Vocab;

    /// <summary>Appends the token ids of one pre-tokenized word.</summary>
    public abstract void Tokenize(string word, List<int> output);

    public static TokenizerModel FromJson(JsonElement model, string path)
    {
        TokenizerJson.Object(model, path);
        return ModelType(model, path) switch
        {
            "BPE" => BpeModel.Parse(model, path),
            "WordPiece" => WordPieceModel.Parse(model, path),
            "WordLevel" => WordLevelModel.Parse(model, path),
            "Unigram" => UnigramModel.Parse(model, path),
            var type => throw new TokenizerLoadException(
                $"Tokenizer model type '{type}' is not supported; BPE (byte-level and SentencePiece-style), WordPiece, WordLevel and Unigram are implemented."),
        };
    }

    /// <summary>
    /// The "type" tag. Files from before it existed are told apart the way HF's untagged fallback does: BPE has
    /// merges, WordPiece has its subword settings, WordLevel only a vocabulary and an unk token, and Unigram's vocabulary
    /// is a list of [piece, score] pairs where the others have a token → id object (so the others fail to read it).
    /// </summary>
    private static string ModelType(JsonElement model, string path)
    {
        if (TokenizerJson.OptionalString(model, "type", path) is { } type) return type;
        if (TokenizerJson.Optional(model, "vocab") is { ValueKind: JsonValueKind.Array }) return "Unigram";
        if (TokenizerJson.Optional(model, "merges") is not null) return "BPE";
        if (TokenizerJson.Optional(model, "continuing_subword_prefix") is not null || TokenizerJson.Optional(model, "max_input_chars_per_word") is not null)
            return "WordPiece";
        return TokenizerJson.Optional(model, "unk_token") is not null ? "WordLevel" : "BPE";
    }

    /// <summary>The <c>vocab</c> object, token → id; ids must not be negative.</summary>
    protected static Dictionary<string, int> ParseVocab(JsonElement model, string path)
    {
        var vocabJson = TokenizerJson.Object(TokenizerJson.Required(model, "vocab", path), $"{path}.vocab");
        var vocab = new Dictionary<string, int>(StringComparer.Ordinal);
        foreach (var entry in vocabJson.EnumerateObject())
        {
            int id = TokenizerJson.AsInt(entry.Value, $"{path}.vocab[\"{entry.Name}\"]");
            if (id < 0) throw new TokenizerLoadException($"'{path}.vocab[\"{entry.Name}\"]' has a negative id {id}.");
            vocab[entry.Name] = id;
        }
        return vocab;
    }
}
