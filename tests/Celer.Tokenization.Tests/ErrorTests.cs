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
    [InlineData("""{"type": "WordPiece", "unk_token": "[UNK]", "vocab": {"[UNK]": 0, "a": 1, "##b": 2}}""")]
    [InlineData("""{"unk_token": "[UNK]", "continuing_subword_prefix": "##", "max_input_chars_per_word": 100, "vocab": {"[UNK]": 0, "a": 1, "##b": 2}}""")]
    public void Minimal_wordpiece_file_loads_with_or_without_its_type_tag(string model)
    {
        // No "type" is a file from before HF wrote one; HF then recognizes WordPiece by its settings.
        var t = Tokenizer.FromJson(Json(model, extra: """, "pre_tokenizer": {"type": "WhitespaceSplit"}"""));
        Assert.Equal([1, 2, 0], t.Encode("ab c"));
        Assert.Equal("a ##b [UNK]", t.Decode([1, 2, 0]));
    }

    [Fact]
    public void Missing_unk_token_fails_the_encode_that_needs_it_as_in_hf()
    {
        var wordPiece = Tokenizer.FromJson(Json("""{"type": "WordPiece", "vocab": {"a": 0, "##b": 1}}"""));
        Assert.Equal([0, 1], wordPiece.Encode("ab"));
        Assert.Contains("'[UNK]'", Assert.Throws<InvalidOperationException>(() => wordPiece.Encode("ac")).Message, StringComparison.Ordinal);

        var wordLevel = Tokenizer.FromJson(Json("""{"type": "WordLevel", "vocab": {"a": 0}, "unk_token": "<unk>"}"""));
        Assert.Equal([0], wordLevel.Encode("a"));
        Assert.Contains("'<unk>'", Assert.Throws<InvalidOperationException>(() => wordLevel.Encode("b")).Message, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("not json", "not valid JSON")]
    [InlineData("[1, 2]", "must be a JSON object")]
    [InlineData("{}", "'$.model' is missing")]
    [InlineData("""{"model": {"type": "WordPiece", "vocab": {"a": -1}}}""", "negative id -1")]
    [InlineData("""{"model": {"type": "WordPiece", "vocab": {}, "max_input_chars_per_word": -1}}""", "max_input_chars_per_word' must not be negative")]
    [InlineData("""{"model": {"type": "WordLevel", "unk_token": "<unk>"}}""", "'$.model.vocab' is missing")]
    [InlineData("""{"model": {"type": "Unigram", "vocab": {"a": 0}}}""", "'$.model.vocab' must be an array")]
    [InlineData("""{"model": {"type": "Unigram", "vocab": [["a", "high"]]}}""", "'$.model.vocab[0][1]' must be a number")]
    [InlineData("""{"model": {"type": "Unigram", "vocab": [["a", -1, 2]]}}""", "'$.model.vocab[0]' must be a [piece, score] pair")]
    [InlineData("""{"model": {"type": "Unigram", "vocab": [["a", 1e400]]}}""", "out of the range of a 64-bit float")]
    [InlineData("""{"model": {"type": "Unigram", "vocab": [["a", -1]], "unk_id": 1}}""", "'$.model.unk_id' 1 is not an index")]
    [InlineData("""{"model": {"type": "Unigram", "vocab": [], "unk_id": 0}}""", "'$.model.vocab' is empty but unk_id is set")]
    [InlineData("""{"model": {"type": "SentencePiece", "vocab": []}}""", "'SentencePiece' is not supported")]
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
    [InlineData(""", "normalizer": {"type": "Precompiled"}""", "'$.normalizer.precompiled_charsmap' is missing")]
    [InlineData(""", "normalizer": {"type": "Precompiled", "precompiled_charsmap": "not base64!"}""", "not valid base64")]
    [InlineData(""", "normalizer": {"type": "Precompiled", "precompiled_charsmap": "AQ=="}""", "too short")]
    [InlineData(""", "normalizer": {"type": "Precompiled", "precompiled_charsmap": "EAAAAAAAAAA="}""", "declares a 16-byte trie")]
    [InlineData(""", "normalizer": {"type": "Precompiled", "precompiled_charsmap": "BAAAAAAAAAD/"}""", "not valid UTF-8")]
    [InlineData(""", "normalizer": {"type": "ByteLevel"}""", "Normalizer type 'ByteLevel'")]
    [InlineData(""", "pre_tokenizer": {"type": "Metaspace", "replacement": "_", "add_prefix_space": false, "prepend_scheme": "always"}""", "add_prefix_space' is false but prepend_scheme is 'always'")]
    [InlineData(""", "pre_tokenizer": {"type": "UnicodeScripts"}""", "Pre-tokenizer type 'UnicodeScripts'")]
    [InlineData(""", "pre_tokenizer": {"type": "Punctuation", "behavior": "Sideways"}""", "unknown value 'Sideways'")]
    [InlineData(""", "pre_tokenizer": {"type": "Split", "pattern": {"Regex": "(a"}, "behavior": "Isolated"}""", "regex is not supported")]
    [InlineData(""", "pre_tokenizer": {"type": "Split", "pattern": {"Regex": "a"}, "behavior": "Sideways"}""", "unknown value 'Sideways'")]
    [InlineData(""", "decoder": {"type": "CTC"}""", "Decoder type 'CTC'")]
    [InlineData(""", "decoder": {"type": "Strip", "content": "ab", "start": 1, "stop": 0}""", "single character")]
    [InlineData(""", "post_processor": {"type": "TemplateProcessing", "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}}], "special_tokens": {}}""", "'<s>', which is not in")]
    [InlineData(""", "post_processor": {"type": "TemplateProcessing", "single": [{"Sequence": {"id": "C", "type_id": 0}}], "special_tokens": {}}""", "must be \"A\" or \"B\"")]
    [InlineData(""", "post_processor": {"type": "BertProcessing", "sep": ["[SEP]", 102]}""", "'$.post_processor.cls' is missing")]
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
