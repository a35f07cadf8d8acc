using Celer.Models.Config;
using Celer.Models.Weights;

namespace Celer.Engine;

/// <summary>
/// What a classifier's logits become, as vLLM applies it: for <c>/classify</c> transformers' reading of
/// <c>problem_type</c> (regression: the logits; multi-label: a sigmoid each; otherwise a softmax over the labels, or the
/// sigmoid of a lone logit); for a cross-encoder's score the activation its sentence-transformers config names
/// (torch.nn.modules classes only), else the same default.
/// </summary>
internal static class ClassifierActivation
{
    private const string Sigmoid = "torch.nn.modules.activation.Sigmoid", Identity = "torch.nn.modules.linear.Identity",
        Tanh = "torch.nn.modules.activation.Tanh", Softmax = "torch.nn.modules.activation.Softmax";

    /// <summary>Refuses, at load, a cross-encoder activation Celer does not apply (rather than ignore it).</summary>
    public static void Check(ClassifierConfig classifier)
    {
        if (classifier.CrossEncoderActivation is { } name && name is not (Sigmoid or Identity or Tanh or Softmax))
        {
            throw new ModelLoadException(
                $"config.json names the cross-encoder activation '{name}'; Celer applies {Sigmoid}, {Identity}, {Tanh} and {Softmax}.");
        }
    }

    /// <summary>A <c>/classify</c> request's probabilities (or values, for regression).</summary>
    public static float[] Classify(float[] logits, ClassifierConfig classifier) => classifier.ProblemType switch
    {
        "regression" => logits,
        "multi_label_classification" => Apply(Sigmoid, logits),
        _ => Default(logits),
    };

    /// <summary>A cross-encoder's scores of its pair.</summary>
    public static float[] Score(float[] logits, ClassifierConfig classifier) =>
        classifier.CrossEncoderActivation is { } name ? Apply(name, logits) : Default(logits);

    private static float[] Default(float[] logits) => Apply(logits.Length < 2 ? Sigmoid : Softmax, logits);

    private static float[] Apply(string name, float[] logits)
    {
        switch (name)
        {
            case Sigmoid:
                return [.. logits.Select(x => (float)(1 / (1 + Math.Exp(-x))))];
            case Tanh:
                return [.. logits.Select(MathF.Tanh)];
            case Softmax:
                double max = logits.Max(), sum = logits.Sum(x => Math.Exp(x - max));
                return [.. logits.Select(x => (float)(Math.Exp(x - max) / sum))];
            default:
                return logits;
        }
    }
}
