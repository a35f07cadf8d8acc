using Celer.Models.Weights;

namespace Celer.Engine.Execution;

/// <summary>Reports each tensor the model takes from the underlying source, for the loading progress bar.</summary>
internal sealed class ProgressWeightSource(IWeightSource inner, int? totalTensors, long? totalBytes, IProgress<ModelLoadProgress>? progress) : IWeightSource
{
    private int _tensors;
    private long _bytes;

    public bool Contains(string name) => inner.Contains(name);

    public WeightTensor Get(string name, params int[] expectedShape)
    {
        WeightTensor tensor = inner.Get(name, expectedShape);
        _tensors++;
        _bytes += tensor.ByteLength;
        progress?.Report(new ModelLoadProgress(_tensors, totalTensors, _bytes, totalBytes));
        return tensor;
    }

    public void Dispose() => inner.Dispose();
}
