using System.Text.Json;

namespace Celer.Server.Media;

/// <summary>
/// Where image inputs may come from and how much of them a request may bring: vLLM's <c>--allowed-media-domains</c>,
/// <c>--allowed-local-media-path</c> and <c>--limit-mm-per-prompt</c>, plus the fetch timeout (vLLM's env
/// <c>VLLM_IMAGE_FETCH_TIMEOUT</c>, here <c>CELER_IMAGE_FETCH_TIMEOUT</c>) and the byte and pixel caps.
/// </summary>
public sealed record MediaOptions
{
    /// <summary>vLLM's default for a modality <c>--limit-mm-per-prompt</c> leaves out (vllm/config/multimodal.py).</summary>
    public const int DefaultImageLimit = 999;

    /// <summary>
    /// Hosts whose <c>http(s)</c> image URLs the server fetches, each redirect hop included; empty: no URL is fetched.
    /// vLLM fetches any host when the list is empty; Celer fetches none, so a server never reaches out on a client's
    /// word unless its operator said where.
    /// </summary>
    public IReadOnlyList<string> AllowedMediaDomains { get; init; } = [];

    /// <summary>The directory whose files <c>file:</c> image URLs may name (symbolic links resolved); null: none.</summary>
    public string? AllowedLocalMediaPath { get; init; }

    /// <summary>Most image parts one request may carry (vLLM's <c>--limit-mm-per-prompt '{"image": N}'</c>).</summary>
    public int ImageLimitPerPrompt { get; init; } = DefaultImageLimit;

    /// <summary>How long one image URL may take to fetch, redirects included (vLLM's 5 s).</summary>
    public TimeSpan ImageFetchTimeout { get; init; } = TimeSpan.FromSeconds(5);

    /// <summary>
    /// Encoded image bytes a request may bring in all, from data URLs, downloads and files together: the request
    /// body's own default cap, so a URL cannot bring in more than a body could.
    /// </summary>
    public long MaxImageBytesPerRequest { get; init; } = 32L * 1024 * 1024;

    /// <summary>
    /// Largest image decoded, in pixels, checked from the header before any pixel is allocated: PIL's
    /// <c>MAX_IMAGE_PIXELS</c> (1 GiB of 24-bit pixels / 4 = 89,478,485), the size past which PIL warns of a
    /// decompression bomb. PIL refuses only at twice that; the lower cap keeps one image's decode buffer under 360 MB
    /// while staying far above any vision encoder's input (LLaVA resizes to 336 × 336).
    /// </summary>
    public long MaxImagePixels { get; init; } = 89_478_485;

    /// <summary>
    /// Reads vLLM's <c>--limit-mm-per-prompt</c> JSON: <c>{"image": 2}</c>, or <c>{"image": {"count": 2, …}}</c> (the
    /// other fields size vLLM's profiling inputs and are ignored here). Only images are served: another modality with a
    /// count above 0 is refused.
    /// </summary>
    /// <exception cref="ArgumentException">Not a JSON object of counts.</exception>
    public static int ParseImageLimit(string json)
    {
        JsonDocument document;
        try
        {
            document = JsonDocument.Parse(json);
        }
        catch (JsonException e)
        {
            throw new ArgumentException($"--limit-mm-per-prompt must be a JSON object such as '{{\"image\": 2}}': {e.Message}", e);
        }

        using (document)
        {
            if (document.RootElement.ValueKind != JsonValueKind.Object)
                throw new ArgumentException("--limit-mm-per-prompt must be a JSON object such as '{\"image\": 2}'.");
            var limit = DefaultImageLimit;
            foreach (var entry in document.RootElement.EnumerateObject())
            {
                var count = entry.Value.ValueKind == JsonValueKind.Object && entry.Value.TryGetProperty("count", out var c) ? c : entry.Value;
                if (count.ValueKind != JsonValueKind.Number || !count.TryGetInt32(out var n) || n < 0)
                    throw new ArgumentException($"--limit-mm-per-prompt: the count of '{entry.Name}' must be a whole number of 0 or more.");
                if (entry.Name == "image")
                    limit = n;
                else if (n > 0)
                    throw new ArgumentException($"--limit-mm-per-prompt: '{entry.Name}' inputs are not served (only images are).");
            }
            return limit;
        }
    }

    /// <summary>vLLM's startup check of <c>--allowed-local-media-path</c>: it must be an existing directory.</summary>
    /// <exception cref="ArgumentException">It is not.</exception>
    public void Check()
    {
        if (AllowedLocalMediaPath is { } path && !Directory.Exists(path))
        {
            throw new ArgumentException(File.Exists(path)
                ? $"Invalid --allowed-local-media-path: {path} must be a directory."
                : $"Invalid --allowed-local-media-path: the path {path} does not exist.");
        }
        if (ImageFetchTimeout <= TimeSpan.Zero)
            throw new ArgumentException("The image fetch timeout must be more than 0 seconds.");
    }
}
