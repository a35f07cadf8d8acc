using System.Net;
using Celer.Server.Serving;

namespace Celer.Server.Media;

/// <summary>
/// Downloads an image URL as vLLM's guarded fetch does: every hop, the first and each redirect, must be http(s) to a
/// host in <c>--allowed-media-domains</c>; the whole fetch, redirects included, has <see cref="MediaOptions.ImageFetchTimeout"/>;
/// the bytes count against the request's budget as they arrive, so an endless body is cut off.
/// </summary>
internal static class HttpMediaFetcher
{
    /// <summary>aiohttp's default, the client vLLM's async fetch uses.</summary>
    private const int MaxRedirects = 10;

    private const int ChunkBytes = 81920;

    // One client for the process (vLLM's global_http_connection); redirects are followed here, so each hop is checked.
    private static readonly HttpClient Client = new(new SocketsHttpHandler
    {
        AllowAutoRedirect = false,
        AutomaticDecompression = DecompressionMethods.None,
        PooledConnectionLifetime = TimeSpan.FromMinutes(2),
        UseCookies = false,
    })
    {
        Timeout = Timeout.InfiniteTimeSpan,
    };

    public static async Task<byte[]> FetchAsync(Uri url, ImagePart part, MediaOptions options, ByteBudget budget, CancellationToken cancellationToken)
    {
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        timeout.CancelAfter(options.ImageFetchTimeout);
        try
        {
            for (var hop = 0; ; hop++)
            {
                CheckAllowed(url, part, options.AllowedMediaDomains, redirected: hop > 0);
                using var response = await Client.GetAsync(url, HttpCompletionOption.ResponseHeadersRead, timeout.Token);
                if (IsRedirect(response.StatusCode) && response.Headers.Location is { } location)
                {
                    if (hop == MaxRedirects)
                        throw OpenAIException.BadRequest($"Fetching the image of {part.Param} was redirected more than {MaxRedirects} times.", part.Param);
                    url = new Uri(url, location);
                    continue;
                }
                if (!response.IsSuccessStatusCode)
                    throw OpenAIException.BadRequest($"Fetching the image of {part.Param} failed: HTTP {(int)response.StatusCode}.", part.Param);
                return await ReadBodyAsync(response.Content, part, budget, timeout.Token);
            }
        }
        catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
        {
            throw OpenAIException.BadRequest(
                $"Fetching the image of {part.Param} took more than {options.ImageFetchTimeout.TotalSeconds:0.###} s (CELER_IMAGE_FETCH_TIMEOUT).", part.Param);
        }
        catch (HttpRequestException e)
        {
            // The reason in words of the client's own URL; the exception's message may hold resolved addresses.
            throw OpenAIException.BadRequest($"Fetching the image of {part.Param} failed: {Describe(e.HttpRequestError)}.", part.Param);
        }
    }

    private static void CheckAllowed(Uri url, ImagePart part, IReadOnlyList<string> allowedDomains, bool redirected)
    {
        var where = redirected ? $"redirected to {url.Scheme}://{url.Host}" : "an http(s) URL";
        if (url.Scheme != Uri.UriSchemeHttp && url.Scheme != Uri.UriSchemeHttps)
            throw OpenAIException.BadRequest($"Fetching the image of {part.Param} was redirected away from http(s).", part.Param);
        if (allowedDomains.Count == 0)
        {
            throw OpenAIException.BadRequest(
                $"The image of {part.Param} is {where}, and this server fetches no URLs: send the image as a data URL, or start the server with --allowed-media-domains naming the hosts it may fetch from.",
                part.Param);
        }
        if (!allowedDomains.Contains(url.IdnHost, StringComparer.OrdinalIgnoreCase))
            throw OpenAIException.BadRequest($"The image of {part.Param} is {where}, whose host '{url.IdnHost}' is not one of the server's --allowed-media-domains.", part.Param);
    }

    private static bool IsRedirect(HttpStatusCode status) => status is HttpStatusCode.MovedPermanently or HttpStatusCode.Found or HttpStatusCode.SeeOther
        or HttpStatusCode.TemporaryRedirect or HttpStatusCode.PermanentRedirect;

    private static async Task<byte[]> ReadBodyAsync(HttpContent content, ImagePart part, ByteBudget budget, CancellationToken cancellationToken)
    {
        // A declared length past the budget is refused before a byte is read.
        if (content.Headers.ContentLength is { } declared && declared > budget.Remaining)
            budget.Take(declared, part.Param);
        await using var body = await content.ReadAsStreamAsync(cancellationToken);
        using var bytes = new MemoryStream();
        var chunk = new byte[ChunkBytes];
        int read;
        while ((read = await body.ReadAsync(chunk, cancellationToken)) > 0)
        {
            budget.Take(read, part.Param);
            await bytes.WriteAsync(chunk.AsMemory(0, read), cancellationToken);
        }
        return bytes.ToArray();
    }

    private static string Describe(HttpRequestError error) => error switch
    {
        HttpRequestError.NameResolutionError => "its host name did not resolve",
        HttpRequestError.ConnectionError => "the connection failed",
        HttpRequestError.SecureConnectionError => "the TLS connection failed",
        HttpRequestError.ResponseEnded => "the response ended early",
        HttpRequestError.InvalidResponse => "the response was malformed",
        _ => "the request failed",
    };
}
