namespace Celer.Grammars;

/// <summary>
/// One sequence's place in a <see cref="CompiledGrammar"/>: which tokens may come next (<see cref="FillNextTokenBitmask"/>),
/// advancing by the token sampled (<see cref="TryAccept"/>), and going back over rejected speculative tokens
/// (<see cref="Rollback"/>). The end-of-sequence ids are allowed exactly where the output is complete. Not
/// thread-safe: a sequence is sampled by one thread at a time.
/// </summary>
public sealed class GrammarMatcher
{
    private readonly CompiledGrammar _grammar;
    private readonly StepScratch _scratch = new();

    // The stacks before any token and after each accepted one; an accepted end of sequence repeats the last.
    private readonly List<StackSet> _history;
    private int _terminatedAt = -1;

    public GrammarMatcher(CompiledGrammar grammar)
    {
        _grammar = grammar ?? throw new ArgumentNullException(nameof(grammar));
        _history = [grammar.Initial];
    }

    public CompiledGrammar Grammar => _grammar;

    /// <summary>Whether an end-of-sequence token was accepted: nothing more may follow.</summary>
    public bool IsTerminated => _terminatedAt >= 0;

    /// <summary>Whether the output so far is a whole sentence (the end of sequence may come now).</summary>
    public bool IsComplete => Current.Ended;

    /// <summary>How many tokens were accepted.</summary>
    public int AcceptedCount => _history.Count - 1;

    internal StackSet Current => _history[^1];

    /// <summary>Advances by <paramref name="tokenId"/>; false (and no change) when the grammar does not allow it.</summary>
    public bool TryAccept(int tokenId)
    {
        if (IsTerminated || (uint)tokenId >= (uint)_grammar.Vocabulary.VocabSize)
        {
            return false;
        }

        if (Array.BinarySearch(_grammar.Vocabulary.EndOfSequenceIds, tokenId) >= 0)
        {
            if (!Current.Ended)
            {
                return false;
            }

            _terminatedAt = _history.Count;
            _history.Add(Current);
            return true;
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

        _history.Add(next);
        return true;
    }

    /// <summary>Forgets the last <paramref name="tokens"/> accepted tokens (speculative drafts that were rejected).</summary>
    public void Rollback(int tokens)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(tokens);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(tokens, AcceptedCount);
        _history.RemoveRange(_history.Count - tokens, tokens);
        if (_terminatedAt >= _history.Count)
        {
            _terminatedAt = -1;
        }
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
