namespace Celer.Models.Weights;

/// <summary>
/// A model directory cannot be loaded: a tensor is missing or has the wrong shape, a file is absent
/// or corrupt, or config.json describes something this engine cannot run. The message names the
/// file, tensor or field at fault so the operator can fix the checkpoint without a debugger.
/// </summary>
public class ModelLoadException : Exception
{
    public ModelLoadException(string message) : base(message) { }

    public ModelLoadException(string message, Exception innerException) : base(message, innerException) { }
}

/// <summary>A safetensors file (or its shard index) is malformed; the message names the file and, when known, the tensor.</summary>
public sealed class SafetensorsException : ModelLoadException
{
    public SafetensorsException(string message) : base(message) { }

    public SafetensorsException(string message, Exception innerException) : base(message, innerException) { }
}
