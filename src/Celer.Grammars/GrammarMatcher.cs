namespace Celer.Grammars;

/// <summary>
/// One sequence's place in a <see cref="CompiledGrammar"/>: which tokens may come next (<see cref="FillNextTokenBitmask"/>)
/// and advancing by the token sampled (<see cref="TryAccept"/>). The end-of-sequence ids are allowed exactly where the
/// output is complete. Speculative drafts need no rollback: the engine advances a matcher only by tokens verified, each
/// before the next draft row is masked. Not thread-safe: a sequence is sampled by one thread at a time.
/// </summary>
public sealed class GrammarMatcher
{
    private readonly CompiledGrammar _grammar;
    private readonly StepScratch _scratch = new();

    public GrammarMatcher(CompiledGrammar grammar)
    {
        _grammar = grammar ?? throw new ArgumentNullException(nameof(grammar));
        Current = grammar.Initial;
    }

    public CompiledGrammar Grammar => _grammar;

    /// <summary>Whether an end-of-sequence token was accepted: nothing more may follow.</summary>
    public bool IsTerminated { get; private set; }

    /// <summary>Whether the output so far is a whole sentence (the end of sequence may come now).</summary>
    public bool IsComplete => Current.Ended;

    /// <summary>The stacks after the tokens accepted so far.</summary>
    internal StackSet Current { get; private set; }

    /// <summary>Advances by <paramref name="tokenId"/>; false (and no change) when the grammar does not allow it.</summary>
    public bool TryAccept(int tokenId)
    {
        if (IsTerminated || (uint)tokenId >= (uint)_grammar.Vocabulary.VocabSize)
        {
            return false;
        }

        if (Array.BinarySearch(_grammar.Vocabulary.EndOfSequenceIds, tokenId) >= 0)
        {
            IsTerminated = Current.Ended;
            return IsTerminated;
        }

        var bytes = _grammar.Vocabulary.BytesOf(tokenId);
        if (bytes.IsEmpty)
        {
            return false;
        }

        var next = _grammar.Advance(Current, bytes, _scratch);
        if (next.IsDead)
        {
            return false;
        }

        Current = next;
        return true;
    }

    /// <summary>
    /// Writes the tokens allowed next as a bitmask over the vocabulary (bit t % 32 of word t / 32); all zero once
    /// terminated. <paramref name="bitmask"/> holds <see cref="TokenVocabulary.BitmaskWords"/> words.
    /// </summary>
    public void FillNextTokenBitmask(Span<uint> bitmask)
    {
        if (bitmask.Length < _grammar.Vocabulary.BitmaskWords)
        {
            throw new ArgumentException($"The bitmask needs {_grammar.Vocabulary.BitmaskWords} words.", nameof(bitmask));
        }

        bitmask = bitmask[.._grammar.Vocabulary.BitmaskWords];
        if (IsTerminated)
        {
            bitmask.Clear();
            return;
        }

        _grammar.FillBitmask(Current, bitmask, _scratch);
    }
}
