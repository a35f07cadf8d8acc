using Celer.Models.Weights;

namespace Celer.Engine.Execution;

/// <summary>Reports each tensor the model takes from the underlying source, for the loading progress bar.</summary>
internal sealed class ProgressWeightSource(IWeightSource inner, int? totalTensors, long? totalBytes, IProgress<ModelLoadProgress>? progress) : IWeightSource
{
    private int _tensors;
    private long _bytes;

    /// <summary>Bytes of the tensors the model has taken, as stored in the checkpoint.</summary>
    public long BytesLoaded => _bytes;

    public bool Contains(string name) => inner.Contains(name);

    public WeightTensor Get(string name, params int[] expectedShape)
    {
        WeightTensor tensor = inner.Get(name, expectedShape);
        _tensors++;
        _bytes += tensor.ByteLength;
        progress?.Report(new ModelLoadProgress(_tensors, totalTensors, _bytes, totalBytes));
        return tensor;
    }

    /// <summary>
    /// Reports the load as finished once the model has taken every tensor it needs: a checkpoint may hold tensors it
    /// never asks for (a tied lm_head copy, rotary buffers), and dummy weights have no total, so the count alone
    /// would never reach 100 %.
    /// </summary>
    public void Complete() => progress?.Report(new ModelLoadProgress(_tensors, _tensors, _bytes, _bytes));

    public Models.Quantization.ActivationQuantization? InputQuantization(params string[] modules) => inner.InputQuantization(modules);

    public void Dispose() => inner.Dispose();
}
