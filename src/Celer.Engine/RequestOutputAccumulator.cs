using System.Text;

namespace Celer.Engine;

/// <summary>Folds a request's stream of deltas into one cumulative <see cref="RequestOutput"/>
/// (vLLM's CUMULATIVE output kind): text, tokens and logprobs appended per sample.</summary>
public sealed class RequestOutputAccumulator(int n)
{
    private readonly StringBuilder[] _text = Enumerable.Range(0, n).Select(_ => new StringBuilder()).ToArray();
    private readonly List<int>[] _tokens = Enumerable.Range(0, n).Select(_ => new List<int>()).ToArray();
    private readonly List<PositionLogprobs>?[] _logprobs = new List<PositionLogprobs>?[n];
    private readonly FinishReason?[] _finishReasons = new FinishReason?[n];
    private readonly object?[] _stopReasons = new object?[n];
    private RequestOutput? _last;
    private IReadOnlyList<PositionLogprobs?>? _promptLogprobs;

    public void Add(RequestOutput delta)
    {
        _last = delta;
        _promptLogprobs ??= delta.PromptLogprobs;
        foreach (CompletionOutput c in delta.Outputs)
        {
            _text[c.Index].Append(c.TextDelta);
            _tokens[c.Index].AddRange(c.TokenIdsDelta);
            if (c.LogprobsDelta is not null)
            {
                (_logprobs[c.Index] ??= []).AddRange(c.LogprobsDelta);
            }
            _finishReasons[c.Index] ??= c.FinishReason;
            _stopReasons[c.Index] ??= c.StopReason;
        }
    }

    public RequestOutput Build()
    {
        RequestOutput last = _last ?? throw new InvalidOperationException("No output was received.");
        var outputs = Enumerable.Range(0, _text.Length)
            .Select(i => new CompletionOutput(i, _text[i].ToString(), _tokens[i].ToArray(), _logprobs[i]?.ToArray(), _finishReasons[i], _stopReasons[i]))
            .ToArray();
        return last with { PromptLogprobs = _promptLogprobs, Outputs = outputs };
    }
}
