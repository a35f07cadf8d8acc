namespace Celer.Tokenization.Tests;

/// <summary>
/// Real tokenizer files fetched by tools/fetch-test-assets.sh into
/// .cache/test-assets/tokenizers/&lt;name&gt;/. Missing assets fail the test (CI always fetches
/// them), so a parity suite can never pass by silently skipping.
/// </summary>
internal static class TestAssets
{
    public static readonly string[] TokenizerNames = ["llama3", "qwen3", "llama2", "gemma3"];

    public static string TokenizerDirectory(string name) => Celer.TestSupport.RepoPaths.TestTokenizer(name);

    public static string TokenizerJsonPath(string name) => Path.Combine(TokenizerDirectory(name), "tokenizer.json");

    private static readonly Dictionary<string, Lazy<Tokenizer>> Ours = TokenizerNames.ToDictionary(
        n => n, n => new Lazy<Tokenizer>(() => Tokenizer.FromFile(TokenizerJsonPath(n))));

    private static readonly Dictionary<string, Lazy<Tokenizers.DotNet.Tokenizer>> References = TokenizerNames.ToDictionary(
        n => n, n => new Lazy<Tokenizers.DotNet.Tokenizer>(() => new Tokenizers.DotNet.Tokenizer(vocabPath: TokenizerJsonPath(n))));

    /// <summary>Ours, loaded once per test run (the Gemma 3 file is 33 MB).</summary>
    public static Tokenizer Load(string name) => Ours[name].Value;

    /// <summary>The HF Rust tokenizer through Tokenizers.DotNet: Encode adds special tokens, Decode skips them.</summary>
    public static Tokenizers.DotNet.Tokenizer Reference(string name) => References[name].Value;
}
