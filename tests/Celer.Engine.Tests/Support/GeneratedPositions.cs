using Celer.TestSupport;

namespace Celer.Engine.Tests.Support;

/// <summary>
/// A request's generated positions as the reference fixtures record them (chosen token and top logprobs), for
/// <see cref="LogprobsComparison"/>. Linked into Celer.Backends.Cuda.Tests too, whose engine tests compare the same way.
/// </summary>
internal static class GeneratedPositions
{
    public static List<GeneratedPosition> Of(RequestOutput output) =>
        [.. output.Outputs.SelectMany(o => o.LogprobsDelta!).Select(p => new GeneratedPosition(p.Chosen.TokenId, p.Chosen.Logprob, [.. p.Top.Select(t => (t.TokenId, t.Logprob))]))];
}
