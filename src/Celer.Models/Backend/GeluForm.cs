namespace Celer.Models.Backend;

/// <summary>Which GELU <see cref="IModelBackend.Gelu"/> computes (transformers' <c>ACT2FN</c> names in brackets).</summary>
public enum GeluForm
{
    /// <summary>The exact form 0.5·x·(1 + erf(x/√2)) (<c>gelu</c>: BERT's, LLaVA's projector).</summary>
    Erf,
    /// <summary>The tanh approximation (<c>gelu_pytorch_tanh</c>, <c>gelu_new</c>).</summary>
    Tanh,
    /// <summary>x·sigmoid(1.702·x) (<c>quick_gelu</c>: CLIP's towers).</summary>
    Quick,
}
