using Celer.Models.Quantization;

namespace Celer.Models.Weights;

/// <summary>
/// A vision-language checkpoint's language model seen under the names a causal LM's checkpoint uses (<c>model.…</c>,
/// <c>lm_head.…</c>), as transformers' checkpoint conversion maps them: the llava-hf layout
/// (<c>language_model.model.…</c>, <c>language_model.lm_head.…</c>) or transformers 5's
/// (<c>model.language_model.…</c>, <c>lm_head.…</c>). Does not own the source.
/// </summary>
public sealed class LanguageModelWeights : IWeightSource
{
    private readonly IWeightSource _inner;
    private readonly string _body, _head;

    public LanguageModelWeights(IWeightSource inner)
    {
        _inner = inner;
        (_body, _head) = inner.Contains("language_model.model.embed_tokens.weight") ? ("language_model.model.", "language_model.lm_head.")
            : inner.Contains("model.language_model.embed_tokens.weight") ? ("model.language_model.", "lm_head.")
            : throw new ModelLoadException("the language model's 'embed_tokens.weight' is missing (looked under 'language_model.model.' and 'model.language_model.')");
    }

    public bool Contains(string name) => _inner.Contains(Map(name));

    public WeightTensor Get(string name, params int[] expectedShape) => _inner.Get(Map(name), expectedShape);

    public ActivationQuantization? InputQuantization(params string[] modules) => _inner.InputQuantization([.. modules.Select(Map)]);

    public void Dispose()
    {
        // The checkpoint belongs to whoever opened it: the vision tower reads it too.
    }

    private string Map(string name) =>
        name.StartsWith("model.", StringComparison.Ordinal) ? _body + name["model.".Length..]
        : name.StartsWith("lm_head.", StringComparison.Ordinal) ? _head + name["lm_head.".Length..]
        : name;
}
