using System.Text.Json.Nodes;
using Celer.Models.Architectures;
using Celer.Models.Weights;

namespace Celer.Engine;

/// <summary>
/// sentence-transformers' Dense module, a projection of the pooled vector before it is normalized (LaBSE, the
/// sentence-T5 and GTR models, EmbeddingGemma): y = activation(W·x + b) with the module folder's <c>config.json</c>
/// (<c>in_features</c>, <c>out_features</c>, <c>bias</c>, <c>activation_function</c> as a torch class path) and its
/// weights <c>linear.weight</c> ([out, in]) and <c>linear.bias</c> in the folder's <c>model.safetensors</c>, as vLLM
/// applies it after pooling, on the host as a <see cref="HostLinear"/> (like a classifier's head).
/// </summary>
public sealed class DenseModule
{
    private const string Identity = "torch.nn.modules.linear.Identity", Tanh = "torch.nn.modules.activation.Tanh",
        Sigmoid = "torch.nn.modules.activation.Sigmoid", Relu = "torch.nn.modules.activation.ReLU";

    private readonly HostLinear _linear;
    private readonly string _activation;

    private DenseModule(HostLinear linear, string activation)
    {
        _linear = linear;
        _activation = activation;
    }

    public int InFeatures => _linear.InFeatures;

    public int OutFeatures => _linear.OutFeatures;

    /// <summary>Reads the module in <paramref name="folder"/>; what Celer cannot apply exactly is refused naming the file and field.</summary>
    public static DenseModule Read(string folder)
    {
        string configPath = Path.Combine(folder, "config.json");
        JsonObject config = (File.Exists(configPath) ? JsonNode.Parse(File.ReadAllText(configPath)) as JsonObject : null)
            ?? throw new ModelLoadException($"The sentence-transformers Dense module has no config at '{configPath}'.");
        int Size(string field) => config[field] is JsonValue v && v.TryGetValue(out int n) && n > 0
            ? n
            : throw new ModelLoadException($"'{configPath}': field '{field}' must be a positive integer.");
        int inFeatures = Size("in_features"), outFeatures = Size("out_features");
        bool hasBias = config["bias"] is not JsonValue b || !b.TryGetValue(out bool flag) || flag;   // nn.Linear's default
        string activation = config["activation_function"] is JsonValue a && a.TryGetValue(out string? name) ? name : Identity;
        if (activation is not (Identity or Tanh or Sigmoid or Relu))
        {
            throw new ModelLoadException($"'{configPath}': activation_function '{activation}' is not supported (Celer applies {Identity}, {Tanh}, {Sigmoid} and {Relu}).");
        }

        string weightsPath = Path.Combine(folder, "model.safetensors");
        if (!File.Exists(weightsPath))
        {
            throw new ModelLoadException(File.Exists(Path.Combine(folder, "pytorch_model.bin"))
                ? $"The Dense module in '{folder}' stores its weights as pytorch_model.bin (a pickle), which Celer does not read; save the model again with a recent sentence-transformers (model.safetensors)."
                : $"The Dense module in '{folder}' has no model.safetensors.");
        }

        using SafetensorsFile file = SafetensorsFile.Open(weightsPath);
        WeightTensor weight = file.Get("linear.weight");
        if (weight.Shape is not [var rows, var columns] || rows != outFeatures || columns != inFeatures)
        {
            throw new ModelLoadException($"'{weightsPath}': linear.weight has shape {WeightTensor.FormatShape(weight.Shape)}, not [{outFeatures}, {inFeatures}] as config.json says.");
        }

        float[]? bias = hasBias ? file.Get("linear.bias").ToFloats("a Dense module's bias") : null;
        if (bias is not null && bias.Length != outFeatures)
        {
            throw new ModelLoadException($"'{weightsPath}': linear.bias has {bias.Length} values, not {outFeatures}.");
        }

        return new DenseModule(new HostLinear(weight.ToFloats("a Dense module's weights"), bias, inFeatures, outFeatures), activation);
    }

    /// <summary>activation(W·x + b), summed and activated in double.</summary>
    public float[] Apply(ReadOnlySpan<float> x) => [.. _linear.Apply(x).Select(sum => (float)(_activation switch
    {
        Tanh => Math.Tanh(sum),
        Sigmoid => 1 / (1 + Math.Exp(-sum)),
        Relu => Math.Max(0, sum),
        _ => sum,
    }))];
}
