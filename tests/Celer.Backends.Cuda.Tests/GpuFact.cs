using Celer.Backends.Cuda;

namespace Celer.Backends.Cuda.Tests;

/// <summary>Skips (never passes) a test on machines without a usable NVIDIA GPU, such as CI.</summary>
internal static class Gpu
{
    private static readonly Lazy<bool> Present = new(CudaDevice.IsAvailable);

    private static readonly Lazy<CudaDevice> Shared = new(() => CudaDevice.Open());

    public static void Require() => Assert.SkipUnless(Present.Value, "No NVIDIA GPU and driver on this machine.");

    /// <summary>One device (primary context) for every test in the process.</summary>
    public static CudaDevice Device => Shared.Value;
}
