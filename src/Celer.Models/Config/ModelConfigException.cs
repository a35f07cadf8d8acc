using Celer.Models.Weights;

namespace Celer.Models.Config;

/// <summary>config.json or generation_config.json is missing a field, has a value of the wrong kind, or asks for something unsupported; the message names the field.</summary>
public sealed class ModelConfigException : ModelLoadException
{
    public ModelConfigException(string message) : base(message) { }

    public ModelConfigException(string message, Exception innerException) : base(message, innerException) { }
}
