namespace Celer.Tokenization.Tests;

/// <summary>Malformed or unsupported tokenizer.json gives a TokenizerLoadException that names the problem.</summary>
public class ErrorTests
{
    private const string Vocab = """{"a": 0, "b": 1, "ab": 2}""";

    private static string Json(string model = $$"""{"type": "BPE", "vocab": {{Vocab}}, "merges": ["a b"]}""", string extra = "") =>
        $$"""{"model": {{model}}{{extra}}}""";

    [Fact]
    public void Minimal_valid_file_loads_and_merges()
    {
        var t = Tokenizer.FromJson(Json());
        Assert.Equal([2, 0], t.Encode("aba"));
        Assert.Equal(3, t.VocabSize);
    }

    [Theory]
    [InlineData("not json", "not valid JSON")]
    [InlineData("[1, 2]", "must be a JSON object")]
    [InlineData("{}", "'$.model' is missing")]
    [InlineData("""{"model": {"type": "WordPiece", "vocab": {}}}""", "'WordPiece' is not supported")]
    [InlineData("""{"model": {"type": "Unigram", "vocab": []}}""", "'Unigram' is not supported")]
    [InlineData("""{"model": {"type": "BPE", "merges": []}}""", "'$.model.vocab' is missing")]
    [InlineData("""{"model": {"type": "BPE", "vocab": {"a": "zero"}, "merges": []}}""", "must be a 32-bit integer")]
    [InlineData("""{"model": {"type": "BPE", "vocab": {"a": 0}, "merges": ["a z"]}}""", "'z', which is not in the vocabulary")]
    [InlineData("""{"model": {"type": "BPE", "vocab": {"a": 0}, "merges": ["a"]}}""", "two tokens separated by one space")]
    [InlineData("""{"model": {"type": "BPE", "vocab": {"a": 0}, "merges": [42]}}""", "\"a b\" string or a [\"a\", \"b\"] pair")]
    [InlineData("""{"model": {"type": "BPE", "vocab": {"a": 0}, "merges": [], "unk_token": "<unk>"}}""", "unk_token' '<unk>' is not in the vocabulary")]
    [InlineData("""{"model": {"type": "BPE", "vocab": {"a": 0}, "merges": [], "dropout": 0.1}}""", "dropout")]
    public void Malformed_model_is_a_clear_error(string json, string expectedMessagePart)
    {
        var e = Assert.Throws<TokenizerLoadException>(() => Tokenizer.FromJson(json));
        Assert.Contains(expectedMessagePart, e.Message, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData(""", "normalizer": {"type": "Precompiled"}""", "Normalizer type 'Precompiled'")]
    [InlineData(""", "pre_tokenizer": {"type": "BertPreTokenizer"}""", "Pre-tokenizer type 'BertPreTokenizer'")]
    [InlineData(""", "pre_tokenizer": {"type": "Split", "pattern": {"Regex": "(a"}, "behavior": "Isolated"}""", "regex is not supported")]
    [InlineData(""", "pre_tokenizer": {"type": "Split", "pattern": {"Regex": "a"}, "behavior": "Sideways"}""", "unknown value 'Sideways'")]
    [InlineData(""", "decoder": {"type": "WordPiece"}""", "Decoder type 'WordPiece'")]
    [InlineData(""", "decoder": {"type": "Strip", "content": "ab", "start": 1, "stop": 0}""", "single character")]
    [InlineData(""", "post_processor": {"type": "TemplateProcessing", "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}}], "special_tokens": {}}""", "'<s>', which is not in")]
    [InlineData(""", "added_tokens": [{"content": "x"}]""", "'$.added_tokens[0].id' is missing")]
    [InlineData(""", "added_tokens": {"id": 1}""", "'$.added_tokens' must be an array")]
    [InlineData(""", "normalizer": {"prepend": "x"}""", "'$.normalizer.type' is missing")]
    public void Malformed_component_is_a_clear_error(string extra, string expectedMessagePart)
    {
        var e = Assert.Throws<TokenizerLoadException>(() => Tokenizer.FromJson(Json(extra: extra)));
        Assert.Contains(expectedMessagePart, e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Missing_file_is_a_load_error()
    {
        var e = Assert.Throws<TokenizerLoadException>(() => Tokenizer.FromFile(Path.Combine(Path.GetTempPath(), Guid.NewGuid().ToString("N"), "tokenizer.json")));
        Assert.Contains("tokenizer.json", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Added_token_flags_follow_hf()
    {
        const string added = """
            , "added_tokens": [
              {"id": 3, "content": "<x>", "special": true, "lstrip": true, "rstrip": true, "normalized": false},
              {"id": 4, "content": "ab", "special": false, "single_word": true, "normalized": false}]
            """;
        var t = Tokenizer.FromJson(Json(extra: added));
        // lstrip/rstrip swallow the spaces around <x>; the model has no " " so spaces vanish either way.
        Assert.Equal([0, 3, 1], t.Encode("a  <x>  b"));
        // single_word: "ab" is only the added token when it stands alone.
        Assert.Equal([4], t.Encode("ab"));
        Assert.Equal([0, 2], t.Encode("aab"));
        Assert.True(t.IsSpecialToken(3));
        Assert.Equal("ab", t.Decode([3, 0, 1]).Replace(" ", ""));
    }
}
