using System.Diagnostics;
using System.Runtime.InteropServices;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace Celer.Cli.Bench;

/// <summary>
/// Writes a benchmark's results as JSON, with what is needed to compare runs: machine, OS, processor count,
/// device, commit, parameters. Only when asked (<c>--output-json</c>), as vLLM's benchmarks save results only
/// with <c>--save-result</c>: a run from a checkout leaves no files in it.
/// </summary>
internal static class BenchmarkReport
{
    // Relaxed escaping keeps "+" and non-ASCII readable in a file meant for people and scripts, not HTML.
    private static readonly JsonSerializerOptions Indented = new() { WriteIndented = true, Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping };

    /// <returns>The path written, or null when no <paramref name="outputPath"/> was given.</returns>
    public static string? Write(string kind, string model, string device, JsonObject parameters, JsonObject results, string? outputPath)
    {
        if (outputPath is null)
            return null;

        var timestamp = DateTimeOffset.UtcNow;
        var report = new JsonObject
        {
            ["kind"] = kind,
            ["model"] = model,
            ["date"] = timestamp.ToString("o"),
            ["machine"] = Environment.MachineName,
            ["os"] = RuntimeInformation.OSDescription,
            ["architecture"] = RuntimeInformation.OSArchitecture.ToString(),
            ["processor_count"] = Environment.ProcessorCount,
            ["runtime"] = RuntimeInformation.FrameworkDescription,
            ["device"] = device,
            ["commit"] = GitCommit(),
            ["parameters"] = parameters,
            ["results"] = results,
        };
        var path = outputPath;
        var directory = Path.GetDirectoryName(Path.GetFullPath(path));
        if (directory is not null)
            Directory.CreateDirectory(directory);
        File.WriteAllText(path, report.ToJsonString(Indented) + "\n");
        return path;
    }

    /// <summary>
    /// <c>CELER_COMMIT</c> when set (a copy of the tree on another machine may carry a stale .git), else
    /// <c>git rev-parse HEAD</c>, or null outside a checkout or without git.
    /// </summary>
    private static string? GitCommit()
    {
        if (Environment.GetEnvironmentVariable("CELER_COMMIT") is { Length: > 0 } pinned)
            return pinned;

        try
        {
            using var git = Process.Start(new ProcessStartInfo("git", "rev-parse HEAD")
            {
                RedirectStandardOutput = true,
                RedirectStandardError = true,
                UseShellExecute = false,
            });
            if (git is null)
                return null;
            var output = git.StandardOutput.ReadToEnd().Trim();
            git.WaitForExit(5000);
            return git.ExitCode == 0 && output.Length > 0 ? output : null;
        }
        catch (System.ComponentModel.Win32Exception)
        {
            return null;
        }
    }
}
