using Celer.Grammars;
using Celer.TestSupport;
using Celer.Tokenization;

namespace Celer.Grammars.Tests;

/// <summary>Real tokenizers' vocabularies as the matcher sees them, loaded once per run.</summary>
internal static class TestVocabularies
{
    private static readonly Dictionary<string, Lazy<(Tokenizer Tokenizer, TokenVocabulary Vocabulary)>> Loaded =
        new[] { "llama3", "qwen3", "llama2", "gemma3" }.ToDictionary(n => n, n => new Lazy<(Tokenizer, TokenVocabulary)>(() => Load(n)));

    public static TokenVocabulary Vocabulary(string name) => Loaded[name].Value.Vocabulary;

    public static Tokenizer Tokenizer(string name) => Loaded[name].Value.Tokenizer;

    private static (Tokenizer, TokenVocabulary) Load(string name)
    {
        var tokenizer = Celer.Tokenization.Tokenizer.FromFile(Path.Combine(RepoPaths.TestTokenizer(name), "tokenizer.json"));
        // The special tokens' first id stands for the model's end of sequence here.
        int eos = Enumerable.Range(0, tokenizer.VocabSize).First(tokenizer.IsSpecialToken);
        return (tokenizer, new TokenVocabulary(tokenizer.TokenBytesInText(), [eos]));
    }
}
