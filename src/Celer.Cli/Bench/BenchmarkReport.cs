using System.Diagnostics;
using System.Runtime.InteropServices;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace Celer.Cli.Bench;

/// <summary>
/// Writes a benchmark's results as JSON (default <c>benchmarks/results/KIND-MODEL-TIMESTAMP.json</c>)
/// with what is needed to compare runs: machine, OS, processor count, device, commit, parameters.
/// </summary>
internal static class BenchmarkReport
{
    // Relaxed escaping keeps "+" and non-ASCII readable in a file meant for people and scripts, not HTML.
    private static readonly JsonSerializerOptions Indented = new() { WriteIndented = true, Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping };

    public static string Write(string kind, string model, string device, JsonObject parameters, JsonObject results, string? outputPath)
    {
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
        var path = outputPath ?? Path.Combine("benchmarks", "results",
            $"{kind}-{SafeName(Path.GetFileName(model.TrimEnd('/', '\\')))}-{timestamp:yyyyMMdd-HHmmss}.json");
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

    private static string SafeName(string name)
    {
        var chars = name.ToCharArray();
        for (var i = 0; i < chars.Length; i++)
        {
            if (!char.IsLetterOrDigit(chars[i]) && chars[i] is not ('-' or '_' or '.'))
                chars[i] = '_';
        }
        return chars.Length == 0 ? "model" : new string(chars);
    }
}
