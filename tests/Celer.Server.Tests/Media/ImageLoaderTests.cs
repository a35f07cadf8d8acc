using System.Net;
using Celer.Server.Media;
using Celer.Server.Serving;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Logging;

namespace Celer.Server.Tests.Media;

/// <summary>Where image parts may come from, and every way a client's URL can be refused, each a 400 naming the part.</summary>
public sealed class ImageLoaderTests : IAsyncLifetime
{
    private static readonly byte[] Rgba = TestImages.RandomRgba(6, 5, seed: 11);
    private static readonly byte[] Png = TestImages.Png(6, 5, Rgba);

    private readonly string _dir = Directory.CreateTempSubdirectory("celer-media-").FullName;
    private WebApplication? _web;
    private Uri _web127 = null!;
    private int _requestsToLocalhost;

    /// <summary>A loopback web server: the image, redirects, an error, a stall and an endless body (bounded).</summary>
    public async ValueTask InitializeAsync()
    {
        var builder = WebApplication.CreateSlimBuilder();
        builder.WebHost.UseKestrel(k => k.Listen(IPAddress.Loopback, 0));
        builder.Logging.ClearProviders();
        _web = builder.Build();
        _web.Use(async (context, next) =>
        {
            if (context.Request.Host.Host == "localhost")
                Interlocked.Increment(ref _requestsToLocalhost);
            await next(context);
        });
        _web.MapGet("/image.png", () => Results.Bytes(Png, "image/png"));
        _web.MapGet("/to-same-host", () => Results.Redirect("/image.png"));
        _web.MapGet("/to-other-host", (HttpContext c) => Results.Redirect($"http://localhost:{c.Request.Host.Port}/image.png"));
        _web.MapGet("/loop", () => Results.Redirect("/loop"));
        _web.MapGet("/missing.png", () => Results.NotFound());
        _web.MapGet("/big.png", () => Results.Bytes(new byte[2 << 20], "image/png"));
        _web.MapGet("/stall.png", async (HttpContext c) =>
        {
            await Task.Delay(TimeSpan.FromSeconds(10), c.RequestAborted);
            return Results.Bytes(Png, "image/png");
        });
        _web.MapGet("/endless.png", async (HttpContext c) =>
        {
            // No length; 64 MiB at most, far past any budget the tests give, so the loop ends on its own.
            var chunk = new byte[64 << 10];
            for (var i = 0; i < 1024 && !c.RequestAborted.IsCancellationRequested; i++)
                await c.Response.Body.WriteAsync(chunk, c.RequestAborted);
        });
        await _web.StartAsync();
        _web127 = CelerServer.GetBoundAddress(_web);
    }

    public async ValueTask DisposeAsync()
    {
        if (_web is not null)
            await _web.DisposeAsync();
        Directory.Delete(_dir, recursive: true);
    }

    private static async Task<IReadOnlyList<Models.Multimodal.RgbImage>> LoadAsync(MediaOptions options, params string[] urls) =>
        await new ImageLoader(options).LoadAsync(urls.Select((url, i) => new ImagePart(url, $"messages[0].content[{i}]")).ToList(), TestContext.Current.CancellationToken);

    private static async Task<OpenAIException> RefusedAsync(MediaOptions options, string expectedParam, params string[] urls)
    {
        var e = await Assert.ThrowsAsync<OpenAIException>(() => LoadAsync(options, urls));
        Assert.Equal(400, e.StatusCode);
        Assert.Equal(expectedParam, e.Param);
        return e;
    }

    private static MediaOptions Allowing127(TimeSpan? timeout = null, long maxBytes = 32L << 20) =>
        new() { AllowedMediaDomains = ["127.0.0.1"], ImageFetchTimeout = timeout ?? TimeSpan.FromSeconds(5), MaxImageBytesPerRequest = maxBytes };

    private string At(string path) => new Uri(_web127, path).ToString();

    [Fact]
    public async Task Images_come_back_in_the_order_of_their_parts()
    {
        var others = Enumerable.Range(12, 2).Select(seed => TestImages.Png(6, 5, TestImages.RandomRgba(6, 5, seed))).ToArray();
        var images = await LoadAsync(new MediaOptions(), TestImages.DataUrl(others[0]), TestImages.DataUrl(Png), TestImages.DataUrl(others[1]));
        Assert.Equal(
            new[] { others[0], Png, others[1] }.Select(bytes => ImageDecoder.Decode(bytes, long.MaxValue, "p").Hash),
            images.Select(image => image.Hash));
        Assert.Equal(TestImages.DropAlpha(Rgba), images[1].Pixels);
    }

    [Theory]
    [InlineData("data:image/png;base64,@@not base64@@", "not valid base64")]
    [InlineData("data:text/plain;base64,aGVsbG8=", "media type 'text/plain'")]
    [InlineData("data:;base64,aGVsbG8=", "media type ''")]
    [InlineData("data:image/png,rawbytes", "only base64 data URLs")]
    [InlineData("data:image/png;base64", "no ','")]
    [InlineData("data:image/png;base64,", "is empty")]
    [InlineData("data:image/png;base64,aGVsbG8gd29ybGQ=", "not an image")]
    [InlineData("ftp://example.org/image.png", "http(s), data or file URL")]
    [InlineData("image.png", "http(s), data or file URL")]
    public async Task Malformed_urls_are_refused(string text, string expected) =>
        Assert.Contains(expected, (await RefusedAsync(new MediaOptions(), "messages[0].content[0]", text)).Message, StringComparison.Ordinal);

    [Fact]
    public async Task The_first_part_to_pass_the_byte_budget_is_the_one_refused()
    {
        var big = TestImages.Png(200, 200, TestImages.RandomRgba(200, 200, seed: 14));
        var options = new MediaOptions { MaxImageBytesPerRequest = big.Length * 3 / 2 };
        Assert.Single(await LoadAsync(options, TestImages.DataUrl(big)));
        var e = await RefusedAsync(options, "messages[0].content[2]", TestImages.DataUrl(Png), TestImages.DataUrl(big), TestImages.DataUrl(big));
        Assert.Contains("bytes in all", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Of_several_failing_fetches_the_earliest_part_is_reported()
    {
        // The stall is the earlier part; the 404 fails first in time.
        var e = await RefusedAsync(Allowing127(TimeSpan.FromMilliseconds(500)), "messages[0].content[1]", At("/image.png"), At("/stall.png"), At("/missing.png"));
        Assert.Contains("took more than", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Urls_are_refused_while_no_domain_is_allowed() =>
        Assert.Contains("fetches no URLs", (await RefusedAsync(new MediaOptions(), "messages[0].content[0]", At("/image.png"))).Message, StringComparison.Ordinal);

    [Fact]
    public async Task A_host_not_allowed_is_refused_before_any_request()
    {
        var e = await RefusedAsync(new MediaOptions { AllowedMediaDomains = ["example.org"] }, "messages[0].content[0]",
            $"http://localhost:{_web127.Port}/image.png");
        Assert.Contains("'localhost' is not one of the server's --allowed-media-domains", e.Message, StringComparison.Ordinal);
        Assert.Equal(0, _requestsToLocalhost);
    }

    [Fact]
    public async Task An_allowed_url_and_a_redirect_within_the_allowed_hosts_are_fetched()
    {
        var images = await LoadAsync(Allowing127(), At("/image.png"), At("/to-same-host"));
        Assert.All(images, image => Assert.Equal(TestImages.DropAlpha(Rgba), image.Pixels));
    }

    [Fact]
    public async Task A_redirect_to_a_host_not_allowed_is_not_followed()
    {
        var e = await RefusedAsync(Allowing127(), "messages[0].content[0]", At("/to-other-host"));
        Assert.Contains("redirected to http://localhost", e.Message, StringComparison.Ordinal);
        Assert.Equal(0, _requestsToLocalhost);
    }

    [Fact]
    public async Task Endless_redirects_stop() =>
        Assert.Contains("redirected more than 10 times", (await RefusedAsync(Allowing127(), "messages[0].content[0]", At("/loop"))).Message, StringComparison.Ordinal);

    [Fact]
    public async Task An_error_status_is_a_400_naming_it() =>
        Assert.Contains("HTTP 404", (await RefusedAsync(Allowing127(), "messages[0].content[0]", At("/missing.png"))).Message, StringComparison.Ordinal);

    [Fact]
    public async Task A_stalled_fetch_times_out()
    {
        var started = System.Diagnostics.Stopwatch.StartNew();
        var e = await RefusedAsync(Allowing127(TimeSpan.FromMilliseconds(300)), "messages[0].content[0]", At("/stall.png"));
        Assert.Contains("took more than 0.3 s", e.Message, StringComparison.Ordinal);
        Assert.InRange(started.Elapsed, TimeSpan.Zero, TimeSpan.FromSeconds(5));
    }

    [Theory]
    [InlineData("/big.png")]        // a declared length past the budget
    [InlineData("/endless.png")]    // no length: cut off as it arrives
    public async Task A_download_past_the_byte_budget_is_cut_off(string path) =>
        Assert.Contains("bytes in all", (await RefusedAsync(Allowing127(maxBytes: 1 << 20), "messages[0].content[0]", At(path))).Message, StringComparison.Ordinal);

    [Fact]
    public async Task File_urls_need_an_allowed_directory_and_stay_inside_it()
    {
        var inside = Directory.CreateDirectory(Path.Combine(_dir, "allowed")).FullName;
        await File.WriteAllBytesAsync(Path.Combine(inside, "image.png"), Png, TestContext.Current.CancellationToken);
        var outside = Path.Combine(_dir, "secret.png");
        await File.WriteAllBytesAsync(outside, Png, TestContext.Current.CancellationToken);
        File.CreateSymbolicLink(Path.Combine(inside, "link.png"), outside);
        Directory.CreateSymbolicLink(Path.Combine(inside, "up"), _dir);
        var options = new MediaOptions { AllowedLocalMediaPath = inside };

        Assert.Contains("without --allowed-local-media-path",
            (await RefusedAsync(new MediaOptions(), "messages[0].content[0]", new Uri(Path.Combine(inside, "image.png")).ToString())).Message, StringComparison.Ordinal);
        Assert.Equal(TestImages.DropAlpha(Rgba), (await LoadAsync(options, new Uri(Path.Combine(inside, "image.png")).ToString()))[0].Pixels);
        foreach (var escape in new[] { outside, Path.Combine(inside, "link.png"), Path.Combine(inside, "up", "secret.png"), inside + "/../secret.png" })
        {
            var e = await RefusedAsync(options, "messages[0].content[0]", "file://" + escape);
            Assert.Contains("not under the server's --allowed-local-media-path", e.Message, StringComparison.Ordinal);
            Assert.DoesNotContain(_dir, e.Message, StringComparison.Ordinal);
        }
        Assert.Contains("could not be read", (await RefusedAsync(options, "messages[0].content[0]", "file://" + Path.Combine(inside, "none.png"))).Message, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("{\"image\": 2}", 2)]
    [InlineData("{\"image\": {\"count\": 3, \"width\": 512, \"height\": 512}}", 3)]
    [InlineData("{\"image\": 0, \"video\": 0}", 0)]
    [InlineData("{}", MediaOptions.DefaultImageLimit)]
    public void Limit_mm_per_prompt_reads_vllm_json(string json, int expected) => Assert.Equal(expected, MediaOptions.ParseImageLimit(json));

    [Theory]
    [InlineData("[1]")]
    [InlineData("image=2")]
    [InlineData("{\"image\": -1}")]
    [InlineData("{\"image\": 1.5}")]
    [InlineData("{\"video\": 1}")]
    public void Limit_mm_per_prompt_refuses_what_it_cannot_serve(string json) =>
        Assert.Throws<ArgumentException>(() => MediaOptions.ParseImageLimit(json));

    [Fact]
    public void The_allowed_local_media_path_must_be_a_directory()
    {
        var file = Path.Combine(_dir, "file.txt");
        File.WriteAllText(file, "x");
        Assert.Contains("must be a directory", Assert.Throws<ArgumentException>(() => new MediaOptions { AllowedLocalMediaPath = file }.Check()).Message, StringComparison.Ordinal);
        Assert.Contains("does not exist", Assert.Throws<ArgumentException>(() => new MediaOptions { AllowedLocalMediaPath = Path.Combine(_dir, "none") }.Check()).Message, StringComparison.Ordinal);
        new MediaOptions { AllowedLocalMediaPath = _dir }.Check();
    }
}
