using Celer.Backends.Cpu;
using Celer.Models.Architectures;
using Celer.Models.Backend;

namespace Celer.Engine.Execution;

/// <summary>
/// The ranks 1 .. n − 1 the loader builds for tensor parallelism in this process (each a backend, a mapping of the
/// checkpoint and a model shard; one <see cref="InProcessGroup"/> for all), owned here until rank 0's model takes them
/// as its <see cref="TensorParallelPeers"/>.
/// </summary>
internal sealed class TensorParallelRanks(int size) : IDisposable
{
    private readonly List<IDisposable> _owned = [];
    private readonly List<(DecoderModel Model, IModelBackend Backend)> _peers = [];

    public InProcessGroup Group { get; } = new(size);

    public T Own<T>(T resource) where T : IDisposable
    {
        _owned.Add(resource);
        return resource;
    }

    public void Add(DecoderModel model, IModelBackend backend) => _peers.Add((model, backend));

    /// <summary>Each rank's KV cache: as many blocks as rank 0's, of its own KV heads.</summary>
    public void AllocateKvCaches(int numLayers, int numBlocks, int blockSize)
    {
        foreach ((DecoderModel model, IModelBackend backend) in _peers)
        {
            backend.AllocateKvCache(numLayers, numBlocks, blockSize, model.Attention);
        }
    }

    /// <summary>Hands every rank (and what it runs on) to a <see cref="TensorParallelPeers"/>, which now owns them.</summary>
    public TensorParallelPeers StartPeers()
    {
        var peers = new TensorParallelPeers([.. _peers.Select(p => p.Model)], [.. _owned, Group]);
        _owned.Clear();
        _peers.Clear();
        return peers;
    }

    public void Dispose()
    {
        foreach (IDisposable resource in _owned)
        {
            resource.Dispose();
        }

        Group.Dispose();
    }
}

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
