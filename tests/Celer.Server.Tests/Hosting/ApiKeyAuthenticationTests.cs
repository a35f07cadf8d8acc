using Celer.Server.Hosting;

namespace Celer.Server.Tests.Hosting;

public class ApiKeyAuthenticationTests
{
    [Theory]
    [InlineData("/v1/models", "/v1/models")]
    [InlineData("/V1/Models", "/v1/models")]
    [InlineData("//v1//chat/completions/", "/v1/chat/completions")]
    [InlineData("/v1%2Fmodels", "/v1/models")]
    [InlineData("/v1%252Fmodels", "/v1/models")]
    [InlineData("/health/../v1/models", "/v1/models")]
    [InlineData("/./v1/./models", "/v1/models")]
    [InlineData("\\v1\\models", "/v1/models")]
    [InlineData("", "/")]
    public void Normalizes_every_spelling_of_a_path(string path, string expected) =>
        Assert.Equal(expected, ApiKeyAuthentication.NormalizePath(path));

    [Theory]
    [InlineData("/health", true)]
    [InlineData("/HEALTH/", true)]
    [InlineData("/metrics", true)]
    [InlineData("/ping", true)]
    [InlineData("/version", true)]
    [InlineData("/v1/models", false)]
    [InlineData("/health%2F..%2Fv1/models", false)]
    [InlineData("/health/../v1/completions", false)]
    [InlineData("/tokenize", false)]
    [InlineData("/anything-else", false)]
    public void Only_the_probes_are_public(string path, bool isPublic) =>
        Assert.Equal(isPublic, ApiKeyAuthentication.IsPublic(path));

    [Theory]
    [InlineData("Bearer s3cret-key", true)]
    [InlineData("bearer s3cret-key", true)]
    [InlineData("Bearer s3cret-key ", true)]
    [InlineData("Bearer s3cret-ke", false)]
    [InlineData("Bearer s3cret-key2", false)]
    [InlineData("Basic s3cret-key", false)]
    [InlineData("s3cret-key", false)]
    [InlineData("Bearer ", false)]
    [InlineData(null, false)]
    public void Checks_the_bearer_key(string? header, bool expected) =>
        Assert.Equal(expected, new ApiKeyAuthentication("s3cret-key").IsAuthorized(header));
}
