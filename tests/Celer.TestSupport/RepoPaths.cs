namespace Celer.TestSupport;

/// <summary>Finds files of the repository from a test's output folder.</summary>
public static class RepoPaths
{
    private static readonly Lazy<string> RootPath = new(FindRoot);

    public static string Root => RootPath.Value;

    public static string Fixtures => Path.Combine(Root, "tests", "fixtures");

    /// <summary>The tiny transformers-made models, one folder each (config, weights, reference.json).</summary>
    public static string FixtureModels => Path.Combine(Fixtures, "models");

    /// <summary>The model that ships with Celer.</summary>
    public static string DefaultModel => Path.Combine(Root, "models", "celer-tiny-py");

    public static IEnumerable<string> FixtureModelNames() =>
        Directory.EnumerateDirectories(FixtureModels).Select(Path.GetFileName).Order(StringComparer.Ordinal)!;

    private static string FindRoot()
    {
        string? built = typeof(RepoPaths).Assembly.GetCustomAttributes(typeof(System.Reflection.AssemblyMetadataAttribute), false)
            .Cast<System.Reflection.AssemblyMetadataAttribute>().FirstOrDefault(a => a.Key == "CelerSourceRoot")?.Value;
        foreach (string? start in new[] { AppContext.BaseDirectory, built })
        {
            for (string? dir = start; dir is not null; dir = Path.GetDirectoryName(dir.TrimEnd('/')))
            {
                if (File.Exists(Path.Combine(dir, "Celer.slnx")))
                {
                    return dir;
                }
            }
        }

        throw new InvalidOperationException($"Celer.slnx not found above {AppContext.BaseDirectory} or {built}.");
    }
}
