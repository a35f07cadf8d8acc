namespace Celer.Models.Architectures;

/// <summary>
/// The ranks 1 .. n − 1 of a tensor-parallel group whose rank 0 the engine drives, in the same process: each rank's
/// <see cref="DecoderModel"/> on a thread of its own. Rank 0's model starts the same call on every peer before it runs its
/// own (a step with the same batch: the collectives inside pair the ranks up) and waits for them after, so the engine
/// sees one model. A peer that fails makes rank 0's call throw its exception once every rank has stopped.
/// </summary>
public sealed class TensorParallelPeers : IDisposable
{
    private readonly Peer[] _peers;
    private readonly IDisposable[] _owned;

    /// <param name="models">Ranks 1 .. n − 1, in order.</param>
    /// <param name="owned">What the peers' models run on (their backends and weights): disposed after the threads stop.</param>
    public TensorParallelPeers(IReadOnlyList<DecoderModel> models, IEnumerable<IDisposable> owned)
    {
        _peers = [.. models.Select((model, i) => new Peer(model, i + 1))];
        _owned = [.. owned];
    }

    /// <summary>Starts <paramref name="call"/> on every peer's model; <see cref="Join"/> waits for them.</summary>
    internal void Start(Action<DecoderModel> call)
    {
        foreach (Peer peer in _peers)
        {
            peer.Start(call);
        }
    }

    /// <summary>Waits for every peer's call; throws the first failure.</summary>
    internal void Join()
    {
        Exception? failure = null;
        foreach (Peer peer in _peers)
        {
            failure ??= peer.Join();
        }

        if (failure is not null)
        {
            throw new InvalidOperationException("A tensor-parallel rank failed: " + failure.Message, failure);
        }
    }

    public void Dispose()
    {
        foreach (Peer peer in _peers)
        {
            peer.Dispose();
        }

        foreach (IDisposable owned in _owned)
        {
            owned.Dispose();
        }
    }

    /// <summary>One rank's thread: it runs each call it is given, one at a time.</summary>
    private sealed class Peer : IDisposable
    {
        private readonly DecoderModel _model;
        private readonly Thread _thread;
        private readonly SemaphoreSlim _work = new(0);
        private readonly ManualResetEventSlim _done = new(initialState: true);
        private Action<DecoderModel>? _call;
        private Exception? _failure;
        private volatile bool _stopping;

        public Peer(DecoderModel model, int rank)
        {
            _model = model;
            _thread = new Thread(Run) { IsBackground = true, Name = $"celer-tp-rank-{rank}" };
            _thread.Start();
        }

        public void Start(Action<DecoderModel> call)
        {
            _done.Wait();   // the previous call was joined already; never two at once
            _call = call;
            _failure = null;
            _done.Reset();
            _work.Release();
        }

        public Exception? Join()
        {
            _done.Wait();
            return _failure;
        }

        public void Dispose()
        {
            _stopping = true;
            _work.Release();
            _thread.Join();
            _work.Dispose();
            _done.Dispose();
        }

        private void Run()
        {
            while (true)
            {
                _work.Wait();
                if (_stopping)
                {
                    return;
                }

                try
                {
                    _call!(_model);
                }
                catch (Exception e)
                {
                    _failure = e;
                }
                finally
                {
                    _done.Set();
                }
            }
        }
    }
}
