namespace Celer.Engine.Scheduling;

/// <summary>
/// Speculative decoding's counters (vLLM's <c>SpecDecodingStats</c>): verification steps with drafts, draft tokens
/// verified, drafts accepted, and accepted drafts by position (a draft at position i is accepted only with all before it).
/// </summary>
public sealed class SpecDecodingStats
{
    private long[] _acceptedPerPosition = [];

    public long NumDrafts { get; private set; }

    public long NumDraftTokens { get; private set; }

    public long NumAcceptedTokens { get; private set; }

    /// <summary>Accepted drafts at positions 0, 1, … of their step's drafts.</summary>
    public IReadOnlyList<long> NumAcceptedTokensPerPosition => _acceptedPerPosition;

    /// <summary>One request's verification: <paramref name="draftTokens"/> drafts, the first <paramref name="accepted"/> accepted.</summary>
    public void Record(int draftTokens, int accepted)
    {
        NumDrafts++;
        NumDraftTokens += draftTokens;
        NumAcceptedTokens += accepted;
        if (_acceptedPerPosition.Length < draftTokens)
        {
            Array.Resize(ref _acceptedPerPosition, draftTokens);
        }

        for (int i = 0; i < accepted; i++)
        {
            _acceptedPerPosition[i]++;
        }
    }

    /// <summary>A copy of the counters so far, which later records leave as it is.</summary>
    public SpecDecodingStats Snapshot() => new()
    {
        NumDrafts = NumDrafts,
        NumDraftTokens = NumDraftTokens,
        NumAcceptedTokens = NumAcceptedTokens,
        _acceptedPerPosition = [.. _acceptedPerPosition],
    };

    /// <summary>The counters so far, handed over; this one starts again from zero.</summary>
    public SpecDecodingStats Take()
    {
        SpecDecodingStats taken = Snapshot();
        NumDrafts = NumDraftTokens = NumAcceptedTokens = 0;
        _acceptedPerPosition = [];
        return taken;
    }

    /// <summary>Adds another window's counters to these (the engine's running totals).</summary>
    public void Add(SpecDecodingStats other)
    {
        NumDrafts += other.NumDrafts;
        NumDraftTokens += other.NumDraftTokens;
        NumAcceptedTokens += other.NumAcceptedTokens;
        if (_acceptedPerPosition.Length < other._acceptedPerPosition.Length)
        {
            Array.Resize(ref _acceptedPerPosition, other._acceptedPerPosition.Length);
        }

        for (int i = 0; i < other._acceptedPerPosition.Length; i++)
        {
            _acceptedPerPosition[i] += other._acceptedPerPosition[i];
        }
    }
}
