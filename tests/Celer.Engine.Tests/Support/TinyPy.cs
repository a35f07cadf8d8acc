using Celer.Tokenization;

namespace Celer.Engine.Tests.Support;

/// <summary>The real byte-level BPE tokenizer of the model that ships with the repo (models/celer-tiny-py).</summary>
internal static class TinyPy
{
    public const int VocabSize = 8192;
    public const int EosTokenId = 0;

    private static readonly Lazy<Tokenizer> Loaded = new(() => Tokenizer.FromFile(Path.Combine(RepoRoot(), "models", "celer-tiny-py", "tokenizer.json")));

    public static Tokenizer Tokenizer => Loaded.Value;

    private static string RepoRoot([System.Runtime.CompilerServices.CallerFilePath] string sourcePath = "")
    {
        // Test binaries may live outside the repo (--artifacts-path): start from this source file too.
        foreach (string? start in new[] { AppContext.BaseDirectory, Path.GetDirectoryName(sourcePath) })
        {
            for (var dir = start is null ? null : new DirectoryInfo(start); dir is not null; dir = dir.Parent)
            {
                if (File.Exists(Path.Combine(dir.FullName, "Celer.slnx")))
                {
                    return dir.FullName;
                }
            }
        }
        throw new InvalidOperationException("Cannot find the repository root (no Celer.slnx above the tests).");
    }

    /// <summary>A model that recites <paramref name="document"/>: the next token is the document's token at the sequence's length.</summary>
    public static Func<IReadOnlyList<int>, int> Reciting(IReadOnlyList<int> document) => sequence => document[sequence.Count % document.Count];
}
