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
    /// The decode GEMMs that issue their first weight loads before the wait, so the weights stream while the previous
    /// kernel finishes: weights are never written by a kernel. Each waits before touching anything else (checked by
    /// reading them: skinny_dots loads W, then waits; the kernels below reach global memory only through it, or, for
    /// the tensor-core kernels, wait right after their first weight loads).
    /// </summary>
    private static readonly string[] WeightsBeforeTheWait = ["skinny_dots", "skinny_gemm", "skinny_gemm_gated", "skinny_gemm_tc", "fp8_skinny_gemm_tc"];

    [Fact]
    public void Every_kernel_waits_for_the_previous_one_before_anything_else()
    {
        string kernels = Path.Combine(RepoPaths.Root, "src", "Celer.Backends.Cuda", "Kernels");
        string source = string.Join('\n', Directory.GetFiles(kernels, "*.cu").Order().Select(File.ReadAllText));
        source = Comments().Replace(source, " ").Replace("\\\n", " ");

        // Device functions whose body starts with the wait: a kernel may begin by calling one of them.
        var waiting = new HashSet<string>(StringComparer.Ordinal);
        foreach (Match definition in Definitions().Matches(source))
        {
            string name = definition.Groups["name"].Value;
            if (FirstStatement(source, definition) is { } first && first.StartsWith("celer_pdl_begin()", StringComparison.Ordinal))
            {
                waiting.Add(name);
            }
            else if (WeightsBeforeTheWait.Contains(name))
            {
                string body = Body(source, definition);
                Assert.True(body.Contains("celer_pdl_begin()", StringComparison.Ordinal) || body.Contains("skinny_dots<", StringComparison.Ordinal),
                    $"{name} reads weights before the wait but never waits");
                waiting.Add(name);
            }
        }

        Assert.Equal(WeightsBeforeTheWait.Length, WeightsBeforeTheWait.Count(waiting.Contains));

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
            string first = FirstStatement(source, definition) ?? "";
            string callee = Callee().Match(first) is { Success: true } call ? call.Groups[1].Value : "";
            if (!first.StartsWith("celer_pdl_begin()", StringComparison.Ordinal) && !waiting.Contains(callee))
            {
                offenders.Add($"{name}: begins with '{first}'");
            }
        }

        Assert.True(kernelsChecked.Count >= 30, $"found only {kernelsChecked.Count} kernels: the parser missed some");
        Assert.True(offenders.Count == 0, "Kernels that do not call celer_pdl_begin() first:\n" + string.Join('\n', offenders));
    }

    /// <summary>The body's first statement, past shared-memory declarations (they touch no global memory).</summary>
    private static string? FirstStatement(string source, Match definition)
    {
        int open = definition.Index + definition.Length - 1;   // the pattern ends at the body's brace
        int at = open + 1;
        while (true)
        {
            int end = source.IndexOf(';', at);
            if (end < 0)
            {
                return null;
            }

            string statement = source[at..end].Trim();
            if (!statement.Contains("__shared__", StringComparison.Ordinal))
            {
                return statement;
            }

            at = end + 1;
        }
    }

    /// <summary>The function's body, from its opening brace to the matching closing one.</summary>
    private static string Body(string source, Match definition)
    {
        int open = definition.Index + definition.Length - 1, depth = 0;
        for (int i = open; i < source.Length; i++)
        {
            depth += source[i] == '{' ? 1 : source[i] == '}' ? -1 : 0;
            if (depth == 0)
            {
                return source[open..(i + 1)];
            }
        }

        return source[open..];
    }

    [GeneratedRegex(@"//[^\n]*|/\*.*?\*/", RegexOptions.Singleline)]
    private static partial Regex Comments();

    // A function definition returning void, up to its opening brace: "... void [__launch_bounds__(...)] name(params) {".
    [GeneratedRegex(@"(?:__global__|__device__)[^;{}()]*?\bvoid\s+(?:__launch_bounds__\([^)]*\)\s*)?(?<name>[\w#]+)\s*\([^{};]*\)\s*\{")]
    private static partial Regex Definitions();

    [GeneratedRegex(@"^(\w+)\s*(?:<[^;]*?>)?\s*\(")]
    private static partial Regex Callee();
}
