namespace Celer.Models.Config;

/// <summary>The MLP activation named by config.json <c>hidden_act</c> (transformers' <c>ACT2FN</c> names).</summary>
public enum HiddenActivation
{
    /// <summary><c>silu</c> (alias <c>swish</c>): x·sigmoid(x), the gate of SwiGLU MLPs.</summary>
    Silu,
    /// <summary><c>gelu</c>: exact erf GELU.</summary>
    Gelu,
    /// <summary><c>gelu_pytorch_tanh</c> / <c>gelu_new</c>: the tanh approximation of GELU.</summary>
    GeluTanh,
}

internal static class HiddenActivationNames
{
    public static bool TryParse(string name, out HiddenActivation activation)
    {
        switch (name)
        {
            case "silu" or "swish": activation = HiddenActivation.Silu; return true;
            case "gelu": activation = HiddenActivation.Gelu; return true;
            case "gelu_pytorch_tanh" or "gelu_new": activation = HiddenActivation.GeluTanh; return true;
            default: activation = default; return false;
        }
    }
}
