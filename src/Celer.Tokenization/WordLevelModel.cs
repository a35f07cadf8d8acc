using System.Text.Json;

namespace Celer.Tokenization;

/// <summary>HF's WordLevel model: each pre-tokenized word is one token, or the unk token when it is not in the vocabulary.</summary>
internal sealed class WordLevelModel : TokenizerModel
{
    private readonly Dictionary<string, int> _vocab;
    private readonly string _unkToken;
    private readonly int? _unkId;

    private WordLevelModel(Dictionary<string, int> vocab, string unkToken)
    {
        _vocab = vocab;
        _unkToken = unkToken;
        _unkId = vocab.TryGetValue(unkToken, out int unk) ? unk : null;
    }

    public override IReadOnlyDictionary<string, int> Vocab => _vocab;

    public static WordLevelModel Parse(JsonElement model, string path) =>
        new(ParseVocab(model, path), TokenizerJson.OptionalString(model, "unk_token", path) ?? "<unk>");

    public override void Tokenize(string word, List<int> output)
    {
        // HF runs the model on every pre-token, so an empty one (none reach here) would be unk too.
        if (word.Length == 0) return;
        output.Add(_vocab.TryGetValue(word, out int id) ? id
            : _unkId ?? throw new InvalidOperationException($"WordLevel needs its unk token '{_unkToken}' for '{word}', but the vocabulary has no such token."));
    }
}
