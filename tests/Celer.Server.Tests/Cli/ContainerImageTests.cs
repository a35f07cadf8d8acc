using System.CommandLine;
using System.Diagnostics;
using System.Runtime.Versioning;
using System.Text.RegularExpressions;
using Celer.Cli;
using Celer.TestSupport;

namespace Celer.Server.Tests.Cli;

/// <summary>
/// The container images' entrypoint (<c>deploy/docker/entrypoint.sh</c>) run through bash with a <c>celer</c> on PATH
/// that prints the arguments it was given (and runs the real <c>celer serve --help</c>, which the entrypoint reads its
/// flag names from); those arguments are then parsed by the real <c>celer</c> command tree, so a mapping the CLI would
/// refuse fails here. The script's two name lists are checked against the sources they mirror.
/// </summary>
[UnsupportedOSPlatform("windows")]
public sealed partial class ContainerImageTests : IDisposable
{
    private static readonly string Entrypoint = Path.Combine(RepoPaths.Root, "deploy", "docker", "entrypoint.sh");

    private readonly string _shimFolder = Directory.CreateTempSubdirectory("celer-entrypoint-").FullName;

    public ContainerImageTests()
    {
        string shim = Path.Combine(_shimFolder, "celer");
        string celer = Path.Combine(AppContext.BaseDirectory, "celer.dll");
        File.WriteAllText(shim, $"#!/bin/sh\n[ \"$2\" = --help ] && exec dotnet '{celer}' \"$@\"\nprintf '%s\\0' \"$@\"\n");
        File.SetUnixFileMode(shim, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
    }

    public void Dispose() => Directory.Delete(_shimFolder, recursive: true);

    [Fact]
    public async Task Variables_become_flags_in_name_order_lists_split_and_program_variables_left_out()
    {
        const string speculative = """{"method": "ngram", "num_speculative_tokens": 4}""";
        string[] argv = await RunEntrypointAsync(
            new()
            {
                ["CELER_PORT"] = "8000",
                ["CELER_HOST"] = "0.0.0.0",
                ["CELER_MAX_MODEL_LEN"] = "4096",
                ["CELER_ENFORCE_EAGER"] = "true",
                ["CELER_ALLOWED_ORIGINS"] = " https://a.example   https://b.example ",
                ["CELER_SPECULATIVE_CONFIG"] = speculative,
                ["CELER_SERVED_MODEL_NAME"] = "",
                ["CELER_API_KEY"] = "secret",
                ["CELER_CACHE_DIR"] = "/var/cache/celer",
            });

        Assert.Equal(
            ["serve", "--allowed-origins", "https://a.example", "--allowed-origins", "https://b.example", "--enforce-eager", "true",
             "--host", "0.0.0.0", "--max-model-len", "4096", "--port", "8000", "--speculative-config", speculative],
            argv);
        ParseResult parsed = CelerCommandLine.CreateRoot().Parse(argv);
        Assert.Empty(parsed.Errors);
        Assert.Equal(["https://a.example", "https://b.example"], parsed.GetValue<string[]>("--allowed-origins")!);
        Assert.True(parsed.GetValue<bool>("--enforce-eager"));
        Assert.Equal(4096, parsed.GetValue<int?>("--max-model-len"));
        Assert.Equal(speculative, parsed.GetValue<string>("--speculative-config"));
    }

    [Fact]
    public async Task A_flag_on_the_command_line_wins_over_its_variable_in_either_spelling()
    {
        string[] argv = await RunEntrypointAsync(
            new() { ["CELER_HOST"] = "0.0.0.0", ["CELER_PORT"] = "8000", ["CELER_MODEL"] = "/models/a" },
            "--port=9000", "--model", "/models/b", "/models/c");

        Assert.Equal(["serve", "--host", "0.0.0.0", "--port=9000", "--model", "/models/b", "/models/c"], argv);
        ParseResult parsed = CelerCommandLine.CreateRoot().Parse(argv);
        Assert.Empty(parsed.Errors);
        Assert.Equal(9000, parsed.GetValue<int>("--port"));
        Assert.Equal(["/models/b"], parsed.GetValue<string[]>("--model")!);
    }

    [Fact]
    public async Task A_variable_that_names_no_flag_is_refused_by_name_before_celer_starts()
    {
        (int exitCode, string[] argv, string error) = await StartEntrypointAsync(new() { ["CELER_MAX_MODEL_LENGTH"] = "4096", ["CELER_PORT"] = "8000" });

        Assert.Equal(2, exitCode);
        Assert.Empty(argv);
        Assert.Equal("celer-entrypoint: CELER_MAX_MODEL_LENGTH names no flag of celer serve (--max-model-length); see celer serve --help\n", error);
    }

    [Fact]
    public async Task The_variables_Kubernetes_makes_for_a_Service_named_celer_are_not_flags()
    {
        string[] argv = await RunEntrypointAsync(
            new()
            {
                ["CELER_SERVICE_HOST"] = "10.96.0.12",
                ["CELER_SERVICE_PORT"] = "8000",
                ["CELER_SERVICE_PORT_HTTP"] = "8000",
                ["CELER_PORT"] = "tcp://10.96.0.12:8000",
                ["CELER_PORT_8000_TCP"] = "tcp://10.96.0.12:8000",
                ["CELER_PORT_8000_TCP_PROTO"] = "tcp",
                ["CELER_PORT_8000_TCP_PORT"] = "8000",
                ["CELER_PORT_8000_TCP_ADDR"] = "10.96.0.12",
                ["CELER_ROUTER_SERVICE_HOST"] = "10.96.0.13",
                ["CELER_ROUTER_PORT"] = "tcp://10.96.0.13:8000",
                ["CELER_MAX_MODEL_LEN"] = "64",
            });

        Assert.Equal(["serve", "--max-model-len", "64"], argv);
    }

    [Fact]
    public async Task An_alias_is_a_flag_too()
    {
        string[] argv = await RunEntrypointAsync(new() { ["CELER_KV_OFFLOADING_SIZE"] = "0.5" });

        Assert.Equal(["serve", "--kv-offloading-size", "0.5"], argv);
        ParseResult parsed = CelerCommandLine.CreateRoot().Parse(argv);
        Assert.Empty(parsed.Errors);
        Assert.Equal(0.5, parsed.GetValue<double>("--kv-offload-size"));
    }

    [Fact]
    public void The_list_flags_are_the_serve_options_that_take_several_values()
    {
        var expected = ServeCommand.Create().Options
            .Where(o => o.Arity.MaximumNumberOfValues > 1)
            .Select(o => o.Name.TrimStart('-'))
            .Order(StringComparer.Ordinal);

        Assert.Equal(expected, ScriptList("list_flags").Order(StringComparer.Ordinal));
    }

    [Fact]
    public void The_program_variables_are_the_CELER_variables_the_sources_name()
    {
        var named = Directory.EnumerateFiles(Path.Combine(RepoPaths.Root, "src"), "*.cs", SearchOption.AllDirectories)
            .Where(path => !path.Contains($"{Path.DirectorySeparatorChar}obj{Path.DirectorySeparatorChar}", StringComparison.Ordinal))
            .SelectMany(path => VariableName().Matches(File.ReadAllText(path)).Select(m => m.Value))
            .Distinct()
            .Order(StringComparer.Ordinal);

        Assert.Equal(named, ScriptList("program_variables").Order(StringComparer.Ordinal));
    }

    private async Task<string[]> RunEntrypointAsync(Dictionary<string, string> variables, params string[] arguments)
    {
        (int exitCode, string[] argv, string error) = await StartEntrypointAsync(variables, arguments);
        Assert.True(exitCode == 0, $"the entrypoint exited with {exitCode}: {error}");
        return argv;
    }

    private async Task<(int ExitCode, string[] Argv, string Error)> StartEntrypointAsync(Dictionary<string, string> variables, params string[] arguments)
    {
        var start = new ProcessStartInfo("bash") { RedirectStandardOutput = true, RedirectStandardError = true };
        start.ArgumentList.Add(Entrypoint);
        foreach (string argument in arguments)
        {
            start.ArgumentList.Add(argument);
        }

        // Only the test's CELER_* variables: a machine's own (CELER_CACHE_DIR on the GPU runs) must not leak in.
        foreach (string name in start.Environment.Keys.Where(k => k.StartsWith("CELER_", StringComparison.Ordinal)).ToList())
        {
            start.Environment.Remove(name);
        }

        foreach ((string name, string value) in variables)
        {
            start.Environment[name] = value;
        }

        start.Environment["PATH"] = _shimFolder + Path.PathSeparator + start.Environment["PATH"];
        using var process = Process.Start(start)!;
        CancellationToken ct = TestContext.Current.CancellationToken;
        Task<string> error = process.StandardError.ReadToEndAsync(ct);
        string output = await process.StandardOutput.ReadToEndAsync(ct);
        await process.WaitForExitAsync(ct);
        return (process.ExitCode, output.Split('\0', StringSplitOptions.RemoveEmptyEntries), await error);
    }

    private static string[] ScriptList(string name)
    {
        Match list = Regex.Match(File.ReadAllText(Entrypoint), $"^{name}=\"([^\"]*)\"$", RegexOptions.Multiline);
        Assert.True(list.Success, $"{name}=\"...\" not found in {Entrypoint}");
        return list.Groups[1].Value.Split(' ', StringSplitOptions.RemoveEmptyEntries);
    }

    [GeneratedRegex(@"\bCELER_[A-Z0-9_]+\b")]
    private static partial Regex VariableName();
}
