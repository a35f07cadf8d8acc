namespace Celer.Tokenization;

/// <summary>
/// A tokenizer.json or tokenizer_config.json that cannot be used: malformed JSON, a missing or
/// mistyped field, or a component (model type, pre-tokenizer, decoder…) this library does not
/// implement. The message names the offending field or component.
/// </summary>
public sealed class TokenizerLoadException : Exception
{
    public TokenizerLoadException(string message) : base(message) { }

    public TokenizerLoadException(string message, Exception innerException) : base(message, innerException) { }
}
