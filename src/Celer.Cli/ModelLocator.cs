namespace Celer.Cli;

/// <summary>
/// Finds the model a command runs when none is named: the repository's <c>models/celer-tiny-py</c>,
/// looked for above the working directory and above the executable (so it works from a checkout and
/// from a build output folder alike).
/// </summary>
internal static class ModelLocator
{
    public const string DefaultModelRelativePath = "models/celer-tiny-py";

    public static string Resolve(string? model)
    {
        if (!string.IsNullOrEmpty(model))
            return model;
        foreach (var start in new[] { Directory.GetCurrentDirectory(), AppContext.BaseDirectory })
        {
            for (var dir = new DirectoryInfo(start); dir is not null; dir = dir.Parent)
            {
                var candidate = Path.Combine(dir.FullName, DefaultModelRelativePath);
                if (File.Exists(Path.Combine(candidate, "config.json")))
                    return candidate;
            }
        }
        throw new CliException($"No model given and the default model ({DefaultModelRelativePath}) was not found above the working directory or the executable. Pass a model directory: celer serve PATH");
    }
}

/// <summary>A user error the CLI reports as one line on stderr with exit code 1, without a stack trace.</summary>
internal sealed class CliException(string message) : Exception(message);
