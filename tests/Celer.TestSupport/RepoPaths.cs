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

    /// <summary>
    /// A real tokenizer's folder (tokenizer.json, tokenizer_config.json) fetched by tools/fetch-test-assets.sh into
    /// .cache/test-assets/tokenizers/&lt;name&gt;/: llama3, qwen3, llama2, gemma3, gptoss. A missing one fails the test (CI always
    /// fetches them), so no suite passes by silently skipping.
    /// </summary>
    public static string TestTokenizer(string name)
    {
        var dir = Path.Combine(Root, ".cache", "test-assets", "tokenizers", name);
        if (!File.Exists(Path.Combine(dir, "tokenizer.json")))
        {
            throw new InvalidOperationException(
                $"Test asset tokenizer '{name}' is missing from .cache/test-assets/tokenizers/. Run tools/fetch-test-assets.sh first.");
        }

        return dir;
    }

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
