namespace Celer.Backends.Cuda.Tests;

/// <summary><c>CELER_CUDA_PROFILE_STEPS</c>: a malformed range is refused with the variable's name, never ignored.</summary>
public sealed class ProfiledStepsTests
{
    [Fact]
    public void A_range_parses_and_unset_means_none()
    {
        Assert.Equal((4, 10), CudaBackend.ProfiledSteps("4:10"));
        Assert.Equal((0, 1), CudaBackend.ProfiledSteps("0:1"));
        Assert.Null(CudaBackend.ProfiledSteps(null));
        Assert.Null(CudaBackend.ProfiledSteps(""));
    }

    [Theory]
    [InlineData("4")]
    [InlineData("10:4")]
    [InlineData("4:4")]
    [InlineData("-1:3")]
    [InlineData("a:b")]
    [InlineData("1:2:3")]
    public void A_malformed_range_names_the_variable(string value)
    {
        var e = Assert.Throws<ArgumentException>(() => CudaBackend.ProfiledSteps(value));
        Assert.Contains("CELER_CUDA_PROFILE_STEPS", e.Message, StringComparison.Ordinal);
    }
}
