using System.Text;
using Celer.Tokenization;

namespace Celer.Engine.Output;

/// <summary>
/// The text side of one sequence (vLLM's v1 <c>IncrementalDetokenizer</c> wrapper): appends
/// generated tokens through <see cref="IncrementalDetokenizer"/>, finds stop strings, and hands
/// out text deltas that never contain (part of) a stop string that is cut off.
/// </summary>
public sealed class SequenceDetokenizer
{
    private readonly IncrementalDetokenizer _detokenizer;
    private readonly IReadOnlyList<string> _stop;
    private readonly bool _includeStopStr;
    private readonly int _minTokens;
    private readonly StringBuilder _text = new();
    private int _numOutputTokens;
    private int _emittedLength;

    public SequenceDetokenizer(Tokenizer tokenizer, IReadOnlyList<int> promptTokenIds, SamplingParams samplingParams)
    {
        _detokenizer = new IncrementalDetokenizer(tokenizer, promptTokenIds, samplingParams.SkipSpecialTokens, samplingParams.SpacesBetweenSpecialTokens);
        _stop = samplingParams.Stop;
        _includeStopStr = samplingParams.IncludeStopStrInOutput;
        _minTokens = samplingParams.MinTokens;
    }

    public string Text => _text.ToString();

    /// <summary>
    /// Adds a step's tokens. <paramref name="stopTerminated"/>: the core finished the sequence on
    /// its last token (EOS or a stop token id), whose text is not part of the output unless
    /// include_stop_str_in_output is set (as in vLLM's detokenizer, which then decodes it too).
    /// Returns the stop string found, if any; the text is then already cut.
    /// </summary>
    public string? Update(IReadOnlyList<int> newTokenIds, bool stopTerminated)
    {
        int checkFrom = _text.Length;
        bool skipLast = stopTerminated && !_includeStopStr;
        int count = skipLast ? newTokenIds.Count - 1 : newTokenIds.Count;
        for (int i = 0; i < count; i++)
        {
            _text.Append(_detokenizer.Append(newTokenIds[i]));
            _numOutputTokens++;
            if (_numOutputTokens <= _minTokens)
            {
                // Text of the first min_tokens tokens can't complete a stop string (vLLM #22014).
                checkFrom = _text.Length;
            }
        }
        if (skipLast)
        {
            _numOutputTokens++;
        }
        if (_stop.Count == 0 || _numOutputTokens <= _minTokens || _text.Length == checkFrom)
        {
            return null;
        }

        // Only the tail can hold a new match: the new text plus the longest stop string before it.
        int maxStop = _stop.Max(s => s.Length);
        int tailStart = Math.Max(0, checkFrom - maxStop);
        string tail = _text.ToString(tailStart, _text.Length - tailStart);
        if (StopChecker.CheckStopStrings(tail, _text.Length - checkFrom, _stop, _includeStopStr) is not { } match)
        {
            return null;
        }
        if (match.TruncateTo >= 0)
        {
            _text.Length = tailStart + match.TruncateTo;
            // Held-back text never includes a stop string's start, so this only guards the invariant.
            _emittedLength = Math.Min(_emittedLength, _text.Length);
        }
        return match.StopString;
    }

    /// <summary>Text not handed out yet, minus what might still turn into a stop string (all of it once finished).</summary>
    public string NextTextDelta(bool finished)
    {
        int end = _text.Length;
        if (!finished && !_includeStopStr && _stop.Count > 0)
        {
            string pending = _text.ToString(_emittedLength, _text.Length - _emittedLength);
            end -= StopChecker.HoldBackLength(pending, _stop);
        }
        if (end <= _emittedLength)
        {
            return "";
        }
        string delta = _text.ToString(_emittedLength, end - _emittedLength);
        _emittedLength = end;
        return delta;
    }
}
