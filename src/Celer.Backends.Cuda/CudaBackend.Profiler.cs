using Celer.Backends.Cuda.Interop;

namespace Celer.Backends.Cuda;

/// <summary>
/// Steps under a profiler: <c>CELER_CUDA_PROFILE_STEPS=first:end</c> brackets steps first … end − 1 (counted from the
/// backend's first step, warm-up included) with <c>cuProfilerStart</c>/<c>cuProfilerStop</c>, so that
/// <c>ncu --profile-from-start off</c> (or <c>nsys --capture-range=cudaProfilerApi</c>) sees those steps' kernels and
/// none of loading, GEMM tuning or graph recording, whose launch counts change from commit to commit.
/// </summary>
public sealed partial class CudaBackend
{
    internal const string ProfileStepsVariable = "CELER_CUDA_PROFILE_STEPS";

    private readonly (int First, int End)? _profiledSteps = ProfiledSteps(Environment.GetEnvironmentVariable(ProfileStepsVariable));

    /// <summary>Parses <c>first:end</c> (0 ≤ first &lt; end); null when the variable is unset.</summary>
    internal static (int First, int End)? ProfiledSteps(string? value)
    {
        if (string.IsNullOrEmpty(value))
        {
            return null;
        }

        string[] parts = value.Split(':');
        return parts.Length == 2 && int.TryParse(parts[0], out int first) && int.TryParse(parts[1], out int end) && first >= 0 && end > first
            ? (first, end)
            : throw new ArgumentException($"{ProfileStepsVariable}='{value}': expected first:end, two step numbers with 0 <= first < end (e.g. 4:10).");
    }

    /// <summary>Starts or stops the profiler at the edges of the profiled steps; called as step <paramref name="step"/> begins.</summary>
    private void MarkProfiledStep(int step)
    {
        if (_profiledSteps is not { } steps)
        {
            return;
        }

        if (step == steps.First)
        {
            CudaDriver.Check(CudaDriver.cuProfilerStart(), "cuProfilerStart");
        }
        else if (step == steps.End)
        {
            CudaDriver.Check(CudaDriver.cuProfilerStop(), "cuProfilerStop");
        }
    }
}
