using Celer.Tokenization;

namespace Celer.Engine.Tests.Support;

/// <summary>The real byte-level BPE tokenizer of the model that ships with the repo (models/celer-tiny-py).</summary>
internal static class TinyPy
{
    public const int VocabSize = 8192;
    public const int EosTokenId = 0;

    private static readonly Lazy<Tokenizer> Loaded = new(() => Tokenizer.FromFile(Path.Combine(Celer.TestSupport.RepoPaths.DefaultModel, "tokenizer.json")));

    public static Tokenizer Tokenizer => Loaded.Value;

    /// <summary>A model that recites <paramref name="document"/>: the next token is the document's token at the sequence's length.</summary>
    public static Func<IReadOnlyList<int>, int> Reciting(IReadOnlyList<int> document) => sequence => document[sequence.Count % document.Count];
}
