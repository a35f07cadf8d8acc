namespace Celer.Engine.Execution;

/// <summary>Several owned resources disposed as one, in the order given (nulls skipped).</summary>
internal sealed class OwnedInOrder(params IDisposable?[] resources) : IDisposable
{
    public void Dispose()
    {
        foreach (IDisposable? resource in resources)
        {
            resource?.Dispose();
        }
    }
}
