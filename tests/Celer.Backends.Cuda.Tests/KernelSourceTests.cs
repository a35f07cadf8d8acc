using System.Text.RegularExpressions;
using Celer.TestSupport;

namespace Celer.Backends.Cuda.Tests;

/// <summary>
/// Rules of the kernel sources that no run can check reliably. On sm_90 every kernel is launched with programmatic
/// stream serialization, so it may start while the kernel before it still runs: a kernel that reads or writes global
/// memory before celer_pdl_begin() (griddepcontrol.wait) races with its predecessor, and would only fail now and then.
/// </summary>
public sealed partial class KernelSourceTests
{
    /// <summary>
    /// Device functions that only read model weights, which no kernel writes once they are loaded: a kernel may call one
    /// of them right before the wait (stream_gemm.cu starts loading W while the previous kernel finishes). A function
    /// joins this list only after its body has been read for exactly that.
    /// </summary>
    private static readonly string[] WeightOnlyPrologues = ["stream_prefetch_weights"];

    [Fact]
    public void Every_kernel_waits_for_the_previous_one_before_anything_else()
    {
        string kernels = Path.Combine(RepoPaths.Root, "src", "Celer.Backends.Cuda", "Kernels");
        string source = string.Join('\n', Directory.GetFiles(kernels, "*.cu").Order().Select(File.ReadAllText));
        source = Comments().Replace(source, " ").Replace("\\\n", " ");

        // Device functions whose body starts with the wait (after a weight-only prologue at most): a kernel may begin by
        // calling one of them.
        var waiting = new HashSet<string>(StringComparer.Ordinal);
        foreach (Match definition in Definitions().Matches(source))
        {
            string[] statements = [.. Statements(source, definition).Take(2)];
            bool prologue = statements.Length == 2 && WeightOnlyPrologues.Contains(CalleeOf(statements[0]));
            if (statements.Length > 0 && statements[prologue ? 1 : 0].StartsWith("celer_pdl_begin()", StringComparison.Ordinal))
            {
                waiting.Add(definition.Groups["name"].Value);
            }
        }

        var kernelsChecked = new List<string>();
        var offenders = new List<string>();
        foreach (Match definition in Definitions().Matches(source))
        {
            if (!definition.Value.Contains("__global__", StringComparison.Ordinal))
            {
                continue;
            }

            string name = definition.Groups["name"].Value;
            kernelsChecked.Add(name);
            string first = Statements(source, definition).FirstOrDefault() ?? "";
            if (!first.StartsWith("celer_pdl_begin()", StringComparison.Ordinal) && !waiting.Contains(CalleeOf(first)))
            {
                offenders.Add($"{name}: begins with '{first}'");
            }
        }

        Assert.True(kernelsChecked.Count >= 30, $"found only {kernelsChecked.Count} kernels: the parser missed some");
        Assert.True(offenders.Count == 0, "Kernels that do not call celer_pdl_begin() first:\n" + string.Join('\n', offenders));
    }

    /// <summary>The body's statements from the first on, past shared-memory declarations (they touch no global memory).</summary>
    private static IEnumerable<string> Statements(string source, Match definition)
    {
        int at = definition.Index + definition.Length;   // the pattern ends at the body's brace
        while (source.IndexOf(';', at) is var end and >= 0)
        {
            string statement = source[at..end].Trim();
            if (!statement.Contains("__shared__", StringComparison.Ordinal))
            {
                yield return statement;
            }

            at = end + 1;
        }
    }

    private static string CalleeOf(string statement) => Callee().Match(statement) is { Success: true } call ? call.Groups[1].Value : "";

    [GeneratedRegex(@"//[^\n]*|/\*.*?\*/", RegexOptions.Singleline)]
    private static partial Regex Comments();

    // A function definition returning void, up to its opening brace: "... void [__launch_bounds__(...)] name(params) {".
    [GeneratedRegex(@"(?:__global__|__device__)[^;{}()]*?\bvoid\s+(?:__launch_bounds__\([^)]*\)\s*)?(?<name>[\w#]+)\s*\([^{};]*\)\s*\{")]
    private static partial Regex Definitions();

    [GeneratedRegex(@"^(\w+)\s*(?:<[^;]*?>)?\s*\(")]
    private static partial Regex Callee();
}
