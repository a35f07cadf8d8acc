using System.Diagnostics;
using System.Runtime.InteropServices;
using System.Text.Json;
using BenchmarkDotNet.Reports;

namespace Celer.Benchmarks;

/// <summary>
/// Writes benchmarks/results/cpu-kernels-&lt;date&gt;-&lt;time&gt;.json (a new file per run): the machine, the commit, the bandwidth baseline and,
/// per case, the mean time, GFLOP/s, GB/s and the fraction of the baseline.
/// </summary>
internal static class ResultsWriter
{
    public static string Write(IEnumerable<Summary> summaries)
    {
        Summary[] all = summaries.ToArray();
        double bandwidth = all.Select(Throughput.Bandwidth).Where(double.IsFinite).DefaultIfEmpty(double.NaN).Max();
        string path = Path.Combine(RepositoryRoot(), "benchmarks", "results", $"cpu-kernels-{DateTime.UtcNow:yyyy-MM-dd-HHmmss}.json");
        Directory.CreateDirectory(Path.GetDirectoryName(path)!);

        using var stream = File.Create(path);
        using var json = new Utf8JsonWriter(stream, new JsonWriterOptions { Indented = true });
        json.WriteStartObject();
        json.WriteString("machine", Environment.MachineName);
        json.WriteString("processor", all.Select(s => s.HostEnvironmentInfo.Cpu.Value?.ProcessorName).FirstOrDefault(n => n is not null) ?? "unknown");
        json.WriteNumber("processorCount", Environment.ProcessorCount);
        json.WriteString("os", RuntimeInformation.OSDescription);
        json.WriteString("runtime", RuntimeInformation.FrameworkDescription);
        json.WriteString("commit", GitCommit() ?? "unknown");
        json.WriteString("date", DateTime.UtcNow.ToString("O"));
        WriteNumberOrNull(json, "bandwidthGBps", bandwidth);
        json.WriteStartArray("results");
        foreach (Summary summary in all)
        {
            foreach (var benchmarkCase in summary.BenchmarksCases)
            {
                if (Throughput.Of(summary, benchmarkCase) is not Throughput throughput)
                {
                    continue;
                }

                json.WriteStartObject();
                json.WriteString("benchmark", $"{benchmarkCase.Descriptor.Type.Name}.{benchmarkCase.Descriptor.WorkloadMethod.Name}");
                json.WriteStartObject("parameters");
                foreach (var parameter in benchmarkCase.Parameters.Items)
                {
                    json.WriteString(parameter.Name, parameter.Value?.ToString());
                }

                json.WriteEndObject();
                json.WriteNumber("meanMicroseconds", Math.Round(throughput.MeanNanoseconds / 1000, 3));
                json.WriteNumber("gflops", Math.Round(throughput.GigaFlops, 2));
                json.WriteNumber("gbps", Math.Round(throughput.GigaBytes, 2));
                WriteNumberOrNull(json, "fractionOfBandwidth", Math.Round(throughput.GigaBytes / bandwidth, 3));
                json.WriteEndObject();
            }
        }

        json.WriteEndArray();
        json.WriteEndObject();
        return path;
    }

    private static void WriteNumberOrNull(Utf8JsonWriter json, string name, double value)
    {
        if (double.IsFinite(value))
        {
            json.WriteNumber(name, value);
        }
        else
        {
            json.WriteNull(name);
        }
    }

    /// <summary>The directory holding Celer.slnx above the working directory, or the working directory.</summary>
    internal static string RepositoryRoot()
    {
        for (var directory = new DirectoryInfo(Environment.CurrentDirectory); directory is not null; directory = directory.Parent)
        {
            if (File.Exists(Path.Combine(directory.FullName, "Celer.slnx")))
            {
                return directory.FullName;
            }
        }

        return Environment.CurrentDirectory;
    }

    internal static string? GitCommit()
    {
        try
        {
            using var git = Process.Start(new ProcessStartInfo("git", "rev-parse HEAD") { RedirectStandardOutput = true, RedirectStandardError = true });
            string? commit = git?.StandardOutput.ReadToEnd().Trim();
            git?.WaitForExit();
            return git?.ExitCode == 0 && !string.IsNullOrEmpty(commit) ? commit : null;
        }
        catch (System.ComponentModel.Win32Exception)
        {
            return null;
        }
    }
}
