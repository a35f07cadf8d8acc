using Celer.Models.Quantization;
using Celer.Models.Weights;

namespace Celer.Engine;

/// <summary>
/// A pooling model's weights under the names the decoder reads (<c>model.layers.0…</c>), whether the checkpoint is a
/// causal LM (names as they are) or a bare base model as sentence-transformers saves it (<c>layers.0…</c>, no
/// <c>model.</c> prefix, no <c>lm_head</c>). Owns the source it wraps.
/// </summary>
internal sealed class BaseModelWeightSource(IWeightSource inner) : IWeightSource
{
    private const string Prefix = "model.";

    public bool Contains(string name) => inner.Contains(Map(name));

    public WeightTensor Get(string name, params int[] expectedShape) => inner.Get(Map(name), expectedShape);

    public ActivationQuantization? InputQuantization(params string[] modules) =>
        inner.InputQuantization([.. modules.Select(m => Map(m + ".weight")[..^".weight".Length])]);

    public void Dispose() => inner.Dispose();

    private string Map(string name) =>
        !inner.Contains(name) && name.StartsWith(Prefix, StringComparison.Ordinal) && inner.Contains(name[Prefix.Length..]) ? name[Prefix.Length..] : name;
}
