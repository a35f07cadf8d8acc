using Celer.Backends.Cuda;
using Celer.Backends.Cuda.Interop;
using Celer.Server.Tests.Support;
using Celer.Server.Tests.Integration;

namespace Celer.Server.Tests.Cli;

/// <summary><c>--device cuda</c> on a machine without a driver or GPU: one clear line and exit code 1, no stack trace.</summary>
public sealed class NoGpuTests
{
    [Fact]
    public async Task Device_cuda_without_a_gpu_is_one_line_and_exit_code_1()
    {
        Assert.SkipWhen(HasGpu(), "this machine has a usable GPU");
        (int exitCode, _, string message) = await CelerCli.RunAsync("generate", "--model", ServerFixture.DefaultModel, "--prompt", "hi", "--device", "cuda");

        Assert.Equal(1, exitCode);
        Assert.StartsWith("error: --device cuda: no usable NVIDIA GPU.", message, StringComparison.Ordinal);
        Assert.EndsWith($"Use --device cpu to run on the CPU.{Environment.NewLine}", message, StringComparison.Ordinal);
        Assert.DoesNotContain("   at ", message, StringComparison.Ordinal);
    }

    private static bool HasGpu()
    {
        try
        {
            CudaDevice.Open().Dispose();
            return true;
        }
        catch (CudaException)
        {
            return false;
        }
    }
}
