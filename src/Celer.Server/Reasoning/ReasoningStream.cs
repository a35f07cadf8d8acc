using System.Text;
using Celer.Server.ToolCalling;

namespace Celer.Server.Reasoning;

/// <summary>
/// One choice's output split into thinking and answer as it streams: before the thinking (Qwen3, whose model opens it
/// itself), inside it until the end marker, then the answer. A marker's text may arrive in pieces over several deltas
/// (a tokenizer without it as one token, or a detokenizer that held a partial character back): text that could be the
/// beginning of a marker is held until the next delta, or the end of the output, settles it. Splitting a whole output
/// in one <see cref="Push"/> and splitting it delta by delta give the same two texts.
/// </summary>
public sealed class ReasoningStream : IReasoningStream
{
    private enum Phase
    {
        BeforeThinking,
        Thinking,
        Answer,
    }

    private readonly string _start;
    private readonly string _end;
    private Phase _phase;
    // DeepSeek-R1's template opens the thinking in the prompt; a start marker the model writes anyway is dropped, once.
    private bool _dropStart;
    private string _held = "";

    internal ReasoningStream(string start, string end, bool startsInThinking)
    {
        _start = start;
        _end = end;
        _phase = startsInThinking ? Phase.Thinking : Phase.BeforeThinking;
        _dropStart = startsInThinking;
        EnteredThinking = startsInThinking;
    }

    /// <summary>Whether the output is (or was) in the thinking: false means it all went to the content.</summary>
    public bool EnteredThinking { get; private set; }

    /// <summary>Whether the end marker has been seen; what follows is content.</summary>
    public bool ThinkingEnded => _phase == Phase.Answer;

    /// <summary>Splits the next delta; text that may be the beginning of a marker stays held.</summary>
    public ReasoningDelta Push(string text)
    {
        var input = _held.Length == 0 ? text : _held + text;
        _held = "";
        return Split(input, final: false);
    }

    /// <summary>The end of the output: held text is what it looked like, and goes to the channel it was in.</summary>
    public ReasoningDelta Finish()
    {
        var input = _held;
        _held = "";
        return Split(input, final: true);
    }

    private ReasoningDelta Split(string input, bool final)
    {
        var reasoning = new StringBuilder();
        var content = new StringBuilder();
        int pos = 0;
        while (pos < input.Length)
        {
            var rest = input.AsSpan(pos);
            if (_phase == Phase.Answer)
            {
                content.Append(rest);
                break;
            }

            if (_phase == Phase.BeforeThinking)
            {
                int at = rest.IndexOf(_start, StringComparison.Ordinal);
                if (at >= 0)
                {
                    content.Append(rest[..at]);
                    pos += at + _start.Length;
                    _phase = Phase.Thinking;
                    EnteredThinking = true;
                    continue;
                }
                int hold = final ? 0 : MarkerText.PartialSuffix(rest, _start);
                content.Append(rest[..^hold]);
                _held = rest[^hold..].ToString();
                break;
            }

            int end = rest.IndexOf(_end, StringComparison.Ordinal);
            int start = _dropStart ? rest.IndexOf(_start, StringComparison.Ordinal) : -1;
            if (start >= 0 && (end < 0 || start < end))
            {
                reasoning.Append(rest[..start]);
                pos += start + _start.Length;
                _dropStart = false;
                continue;
            }
            if (end >= 0)
            {
                reasoning.Append(rest[..end]);
                pos += end + _end.Length;
                _phase = Phase.Answer;
                continue;
            }
            int held = final ? 0 : Math.Max(MarkerText.PartialSuffix(rest, _end), _dropStart ? MarkerText.PartialSuffix(rest, _start) : 0);
            reasoning.Append(rest[..^held]);
            _held = rest[^held..].ToString();
            break;
        }
        return new ReasoningDelta(reasoning.ToString(), content.ToString());
    }
}
