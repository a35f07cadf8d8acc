namespace Celer.Tokenization;

/// <summary>An entry of tokenizer.json's <c>added_tokens</c>, with HF's matching flags.</summary>
internal sealed record AddedToken(int Id, string Content, bool Special, bool SingleWord, bool LStrip, bool RStrip, bool Normalized);
