using Celer.Models.Weights;

namespace Celer.Engine.Execution;

/// <summary>
/// The weights a model reads (the checkpoint through its quantization wrapper, <paramref name="wrap"/>), reporting each
/// tensor read from the checkpoint itself for the loading progress bar: a quantized weight is several stored tensors
/// (codes, scales, zero points), which the wrapper reads, so counting below it makes the count and the bytes those of
/// the files, the totals' own units.
/// </summary>
internal sealed class ProgressWeightSource : IWeightSource
{
#pragma warning disable CA2213 // _model is it, or wraps it: disposing _model disposes it
    private readonly StoredTensors _stored;
#pragma warning restore CA2213
    private readonly IWeightSource _model;
    private readonly IProgress<ModelLoadProgress>? _progress;

    public ProgressWeightSource(IWeightSource checkpoint, Func<IWeightSource, IWeightSource> wrap, int? totalTensors, long? totalBytes,
        IProgress<ModelLoadProgress>? progress)
    {
        _progress = progress;
        _stored = new StoredTensors(checkpoint, totalTensors, totalBytes, progress);
        _model = wrap(_stored);
    }

    /// <summary>Bytes of the distinct tensors read from the checkpoint, as stored there.</summary>
    public long BytesLoaded => _stored.Bytes;

    public bool Contains(string name) => _model.Contains(name);

    public WeightTensor Get(string name, params int[] expectedShape) => _model.Get(name, expectedShape);

    /// <summary>
    /// Reports the load as finished once the model has taken every tensor it needs: a checkpoint may hold tensors it
    /// never asks for (a tied lm_head copy, rotary buffers), and dummy weights have no total, so the count alone
    /// would never reach 100 %.
    /// </summary>
    public void Complete() => _progress?.Report(new ModelLoadProgress(_stored.Tensors, _stored.Tensors, _stored.Bytes, _stored.Bytes));

    public Models.Quantization.ActivationQuantization? InputQuantization(params string[] modules) => _model.InputQuantization(modules);

    public void Dispose() => _model.Dispose();   // each wrapper disposes the source it wraps, down to the checkpoint

    /// <summary>Counts each stored tensor once, however often the wrappers above read it (a format probe, then the read).</summary>
    private sealed class StoredTensors(IWeightSource inner, int? totalTensors, long? totalBytes, IProgress<ModelLoadProgress>? progress) : IWeightSource
    {
        private readonly HashSet<string> _read = new(StringComparer.Ordinal);

        public int Tensors => _read.Count;

        public long Bytes { get; private set; }

        public bool Contains(string name) => inner.Contains(name);

        public WeightTensor Get(string name, params int[] expectedShape)
        {
            WeightTensor tensor = inner.Get(name, expectedShape);
            if (_read.Add(name))
            {
                Bytes += tensor.ByteLength;
                progress?.Report(new ModelLoadProgress(_read.Count, totalTensors, Bytes, totalBytes));
            }

            return tensor;
        }

        public Models.Quantization.ActivationQuantization? InputQuantization(params string[] modules) => inner.InputQuantization(modules);

        public void Dispose() => inner.Dispose();
    }
}
