using System.Runtime.ExceptionServices;
using Celer.Models.Multimodal;
using Celer.Server.Serving;

namespace Celer.Server.Media;

/// <summary>
/// Loads a request's image parts as vLLM's <c>MediaConnector</c> does: <c>data:</c> URLs (base64 only), <c>http(s)</c>
/// URLs from the allowed domains, <c>file:</c> URLs under the allowed directory. Data URLs are read first, in request
/// order (their bytes are already in the request, so the byte budget runs out at the same part every time); then the
/// fetches and every decode run at once on the thread pool. Every failure is a 400 naming the part: among the fetches
/// and decodes, all are let finish (each is bounded by the fetch timeout and the byte budget) and the first failing
/// part in request order is the one reported, whichever failed first in time, so a request fails the same way twice.
/// </summary>
internal sealed class ImageLoader(MediaOptions options)
{
    public MediaOptions Options => options;

    public async Task<IReadOnlyList<RgbImage>> LoadAsync(IReadOnlyList<ImagePart> parts, CancellationToken cancellationToken)
    {
        if (parts.Count == 0)
            return [];
        var budget = new ByteBudget(options.MaxImageBytesPerRequest);
        var inline = parts.Select(part => IsDataUrl(part.Url) ? DataUrl.Decode(part, budget) : null).ToArray();
        var loads = parts.Select((part, i) => Task.Run(async () =>
        {
            var bytes = inline[i] ?? await FetchAsync(part, budget, cancellationToken);
            return ImageDecoder.Decode(bytes, options.MaxImagePixels, part.Param);
        }, cancellationToken)).ToArray();
        await ((Task)Task.WhenAll(loads)).ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);

        cancellationToken.ThrowIfCancellationRequested();
        foreach (var load in loads)
        {
            if (load.IsFaulted)
                ExceptionDispatchInfo.Throw(load.Exception.InnerException!);
        }
        return loads.Select(load => load.Result).ToList();
    }

    private static bool IsDataUrl(string url) => url.StartsWith("data:", StringComparison.OrdinalIgnoreCase);

    private Task<byte[]> FetchAsync(ImagePart part, ByteBudget budget, CancellationToken cancellationToken)
    {
        if (!Uri.TryCreate(part.Url, UriKind.Absolute, out var uri))
            throw OpenAIException.BadRequest($"The URL of {part.Param} must be an http(s), data or file URL.", part.Param);
        if (uri.Scheme == Uri.UriSchemeHttp || uri.Scheme == Uri.UriSchemeHttps)
            return HttpMediaFetcher.FetchAsync(uri, part, options, budget, cancellationToken);
        if (uri.Scheme == Uri.UriSchemeFile)
            return LocalMediaFile.ReadAsync(uri, part, options.AllowedLocalMediaPath, budget, cancellationToken);
        throw OpenAIException.BadRequest($"The URL of {part.Param} must be an http(s), data or file URL, not {uri.Scheme}:.", part.Param);
    }
}

/// <summary>The encoded image bytes a request has left to bring in (<see cref="MediaOptions.MaxImageBytesPerRequest"/>), shared by its parts' loads.</summary>
internal sealed class ByteBudget
{
    private readonly long _total;
    private long _remaining;

    public ByteBudget(long total)
    {
        _total = total;
        _remaining = total;
    }

    public long Remaining => Interlocked.Read(ref _remaining);

    /// <exception cref="OpenAIException">400: <paramref name="bytes"/> more would pass the request's total.</exception>
    public void Take(long bytes, string param)
    {
        if (Interlocked.Add(ref _remaining, -bytes) < 0)
            throw OpenAIException.BadRequest($"The images of the request come to more than {_total:N0} bytes in all ({param} passes it).", param);
    }
}
