using System.Runtime.InteropServices;
using Celer.Models.Backend;

namespace Celer.Engine;

/// <summary>
/// The sampling of one step's rows on an <see cref="IDeviceSampler"/>: each row's state becomes a
/// <see cref="DeviceSamplingRow"/> (its random draw taken from the sequence's own generator, as the host sampler
/// takes it) plus the edits of its logits processors, recorded by the same code the host sampler runs; the
/// results come back as the host sampler's <see cref="SampleResult"/>s. Reused from step to step.
/// </summary>
internal sealed class DeviceSamplingBatch
{
    private readonly List<DeviceSamplingRow> _rows = [];
    private readonly List<LogitEdit> _edits = [];
    private readonly List<int> _allowed = [];
    private readonly List<uint> _bitmasks = [];
    private readonly List<Celer.Grammars.GrammarMatcher> _grammars = [];

    // Rows with a grammar from which the bitmasks are filled in parallel: a row's first visit of a grammar state walks
    // the vocabulary's trie (milliseconds); a cached one is a 16 KB copy, not worth a thread.
    private const int ParallelBitmaskRows = 4;
    private readonly List<int> _logprobRows = [];
    private readonly List<int> _logprobCounts = [];
    private int[] _tokens = [];

    public int Count => _rows.Count;

    public void Clear()
    {
        _rows.Clear();
        _edits.Clear();
        _allowed.Clear();
        _bitmasks.Clear();
        _grammars.Clear();
        _logprobRows.Clear();
        _logprobCounts.Clear();
    }

    /// <summary>Adds the next logits row, to be sampled for <paramref name="state"/>'s sequence.</summary>
    public void Add(SamplingState state, IReadOnlyCollection<int> eosTokenIds, int vocabSize)
    {
        var p = state.Params;
        var row = new DeviceSamplingRow
        {
            Temperature = state.Temperature,
            TopP = p.TopP,
            MinP = p.MinP,
            TopK = p.TopK,
            // The host sampler draws once per random sample too, so a seeded sequence follows the same stream.
            Uniform = state.Temperature == 0f ? 0 : state.Generator.NextDouble(),
            EditsStart = _edits.Count,
            AllowedStart = _allowed.Count,
            Fallback = state.SortedAllowedTokenIds is { Length: > 0 } first ? first[0] : 0,
        };
        var editor = new RecordingLogitsEditor(_edits, vocabSize);
        LogitsProcessors.ApplyEdits(ref editor, state, eosTokenIds);
        row.EditsCount = _edits.Count - row.EditsStart;
        if (state.SortedAllowedTokenIds is { } allowed)
        {
            _allowed.AddRange(allowed);
            row.AllowedCount = allowed.Length;
        }

        if (state.Grammar is { } grammar)
        {
            // Filled at launch (FillBitmasks), on the host, while the step's forward pass runs on the device.
            _grammars.Add(grammar);
            row.TokenBitmask = _grammars.Count;
        }

        if (p.Logprobs is { } count)
        {
            _logprobRows.Add(_rows.Count);
            _logprobCounts.Add(count);
        }

        _rows.Add(row);
    }

    /// <summary>Samples every row added, with the logprobs each asked for.</summary>
    public SampleResult[] Sample(IDeviceSampler sampler, Tensor logits)
    {
        Launch(sampler, logits);
        return Finish(sampler, logits);
    }

    /// <summary>Whether a row asked for logprobs, which <see cref="Finish"/> reads from the logits still in place.</summary>
    public bool WantsLogprobs => _logprobRows.Count > 0;

    /// <summary>Starts the sampling of every row added; <see cref="Finish"/> or <see cref="ReadTokens"/> waits for it.</summary>
    public void Launch(IDeviceSampler sampler, Tensor logits)
    {
        FillBitmasks();
        sampler.LaunchSample(logits, CollectionsMarshal.AsSpan(_rows), CollectionsMarshal.AsSpan(_edits), CollectionsMarshal.AsSpan(_allowed),
            CollectionsMarshal.AsSpan(_bitmasks));
    }

    /// <summary>The grammar rows' bitmasks, k-th at words [(k − 1) · words, k · words), in parallel for many rows.</summary>
    private void FillBitmasks()
    {
        if (_grammars.Count == 0)
        {
            return;
        }

        // Grammars of one model share its vocabulary, so every mask has the same width.
        int words = _grammars[0].Grammar.Vocabulary.BitmaskWords;
        CollectionsMarshal.SetCount(_bitmasks, _grammars.Count * words);
        if (_grammars.Count < ParallelBitmaskRows)
        {
            for (int k = 0; k < _grammars.Count; k++)
            {
                _grammars[k].FillNextTokenBitmask(CollectionsMarshal.AsSpan(_bitmasks).Slice(k * words, words));
            }

            return;
        }

        Parallel.For(0, _grammars.Count, k => _grammars[k].FillNextTokenBitmask(CollectionsMarshal.AsSpan(_bitmasks).Slice(k * words, words)));
    }

    /// <summary>Waits for the launched sampling: the ids, row i's in element i, valid until the next launch.</summary>
    public ReadOnlySpan<int> ReadTokens(IDeviceSampler sampler)
    {
        if (_tokens.Length < _rows.Count)
        {
            _tokens = new int[_rows.Count];
        }

        sampler.ReadSampled(_tokens);
        return _tokens.AsSpan(0, _rows.Count);
    }

    /// <summary>Waits for the launched sampling and adds the logprobs asked for, from <paramref name="logits"/> (unchanged since the launch).</summary>
    public SampleResult[] Finish(IDeviceSampler sampler, Tensor logits)
    {
        ReadOnlySpan<int> tokens = ReadTokens(sampler);
        var results = new SampleResult[tokens.Length];
        for (int i = 0; i < results.Length; i++)
        {
            results[i] = new SampleResult(tokens[i], null);
        }

        if (WantsLogprobs)
        {
            AddLogprobs(sampler, logits, results);
        }

        return results;
    }

    private void AddLogprobs(IDeviceSampler sampler, Tensor logits, SampleResult[] results)
    {
        int n = _logprobRows.Count, numTop = Math.Min(_logprobCounts.Max(), (int)logits.Columns);
        int[] chosen = _logprobRows.Select(r => results[r].TokenId).ToArray();
        var chosenLogprobs = new float[n];
        var ranks = new int[n];
        var topIds = new int[n * numTop];
        var topLogprobs = new float[n * numTop];
        sampler.Logprobs(logits, CollectionsMarshal.AsSpan(_logprobRows), chosen, numTop, chosenLogprobs, ranks, topIds, topLogprobs);
        for (int j = 0; j < n; j++)
        {
            int row = _logprobRows[j], wanted = Math.Min(_logprobCounts[j], numTop);
            var top = new TokenLogprob[wanted];
            // vLLM ranks the top list by position (1..k), even across ties.
            for (int t = 0; t < wanted; t++)
            {
                top[t] = new TokenLogprob(topIds[j * numTop + t], topLogprobs[j * numTop + t], t + 1);
            }

            results[row] = results[row] with { Logprobs = new PositionLogprobs(new TokenLogprob(chosen[j], chosenLogprobs[j], ranks[j]), top) };
        }
    }
}
