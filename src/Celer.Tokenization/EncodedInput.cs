namespace Celer.Tokenization;

/// <summary>
/// A text (or pair of texts) encoded for an encoder model: <see cref="InputIds"/> and, one per id,
/// <see cref="TokenTypeIds"/> (BERT's segment ids: 0 for the first text and its special tokens, 1 for the second).
/// </summary>
public sealed record EncodedInput(int[] InputIds, int[] TokenTypeIds);
