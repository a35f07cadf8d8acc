using Celer.Models.Backend;

namespace Celer.Models.Architectures;

/// <summary>
/// A call rank 0's <see cref="DecoderModel"/> makes on every other rank of its tensor-parallel group before it makes the
/// same call itself (<see cref="ITensorParallelPeers"/>): the ranks run the same steps over their shards, and the
/// collectives inside pair them up. A value, so that it can cross into a worker process.
/// </summary>
public abstract record PeerCall
{
    private PeerCall()
    {
    }

    /// <summary>Makes this call on a rank's model; its result (logits, graph sizes) is rank 0's to use, so it is dropped.</summary>
    public abstract void ApplyTo(DecoderModel model);

    /// <summary><see cref="DecoderModel.Forward"/> of a step (the logits are rank 0's to read).</summary>
    public sealed record Forward(ForwardBatch Batch) : PeerCall
    {
        public override void ApplyTo(DecoderModel model) => model.Forward(Batch, static (_, _, _) => { });
    }

    /// <summary><see cref="DecoderModel.ForwardToDevice"/> of a step (rank 0 samples on its device).</summary>
    public sealed record ForwardToDevice(ForwardBatch Batch) : PeerCall
    {
        public override void ApplyTo(DecoderModel model) => model.ForwardToDevice(Batch);
    }

    /// <summary><see cref="DecoderModel.CaptureGraphs"/>: every rank records the same decode graphs.</summary>
    public sealed record CaptureGraphs : PeerCall
    {
        public override void ApplyTo(DecoderModel model) => model.CaptureGraphs();
    }
}

/// <summary>
/// The ranks 1 .. n − 1 of a tensor-parallel group whose rank 0 the engine drives (worker processes): rank 0's model
/// starts each call on them before running its own and joins them after, so the engine sees one model.
/// </summary>
public interface ITensorParallelPeers : IDisposable
{
    /// <summary>Starts <paramref name="work"/> on every peer; returns without waiting for it to finish.</summary>
    void Start(PeerCall work);

    /// <summary>After rank 0's own part of the call: throws if a peer failed (it is not waited for: the collectives
    /// inside the call already kept the ranks in step).</summary>
    void Join();

    /// <summary>Has <paramref name="onFailure"/> called, once and from another thread, when a peer fails between calls.</summary>
    void WatchFailures(Action<Exception> onFailure);
}
