using System.Security.Cryptography;
using System.Text;
using Celer.Server.Protocol;
using Celer.Server.Serving;

namespace Celer.Server.Hosting;

/// <summary>
/// Bearer-key check (vLLM's <c>--api-key</c>). Default-deny: every path needs the key except the
/// public probes, and the decision is made on a normalized path (case, percent-encoded slashes,
/// repeated slashes, dot segments), so no spelling of a protected route slips past while routing
/// still finds it (BAD_INPUT.md #3). The key is compared as SHA-256 digests with
/// <see cref="CryptographicOperations.FixedTimeEquals"/>, so timing reveals neither the key nor its length.
/// </summary>
internal sealed class ApiKeyAuthentication(string apiKey)
{
    /// <summary>Probes a load balancer or Prometheus must reach without the key, as vLLM leaves them open.</summary>
    private static readonly HashSet<string> PublicPaths = ["/health", "/ping", "/version", "/metrics"];

    private readonly byte[] _expectedDigest = SHA256.HashData(Encoding.UTF8.GetBytes(apiKey));

    public async Task InvokeAsync(HttpContext context, RequestDelegate next)
    {
        if (HttpMethods.IsOptions(context.Request.Method) || IsPublic(context.Request.Path.Value) || IsAuthorized(context.Request.Headers.Authorization))
        {
            await next(context);
            return;
        }
        context.Response.Headers.WWWAuthenticate = "Bearer";
        var error = new ErrorResponse(new ErrorInfo("Unauthorized: a valid API key is required in 'Authorization: Bearer <key>'.", "AuthenticationError", null, "invalid_api_key"));
        await new OpenAIErrorResult(StatusCodes.Status401Unauthorized, error).ExecuteAsync(context);
    }

    internal static bool IsPublic(string? path) => PublicPaths.Contains(NormalizePath(path));

    internal bool IsAuthorized(string? authorization)
    {
        const string scheme = "Bearer ";
        if (authorization is null || !authorization.StartsWith(scheme, StringComparison.OrdinalIgnoreCase))
            return false;
        var presented = SHA256.HashData(Encoding.UTF8.GetBytes(authorization.AsSpan(scheme.Length).Trim().ToString()));
        return CryptographicOperations.FixedTimeEquals(presented, _expectedDigest);
    }

    /// <summary>
    /// Lower case, percent-decoded (repeatedly, so double encoding collapses too), backslashes as
    /// slashes, empty and "." segments dropped, ".." resolved, no trailing slash.
    /// </summary>
    internal static string NormalizePath(string? path)
    {
        if (string.IsNullOrEmpty(path))
            return "/";
        var decoded = path;
        for (var i = 0; i < 3 && decoded.Contains('%'); i++)
            decoded = Uri.UnescapeDataString(decoded);
        var segments = new List<string>();
        foreach (var segment in decoded.Replace('\\', '/').ToLowerInvariant().Split('/'))
        {
            var trimmed = segment.Trim();
            if (trimmed.Length == 0 || trimmed == ".")
                continue;
            if (trimmed == "..")
            {
                if (segments.Count > 0)
                    segments.RemoveAt(segments.Count - 1);
                continue;
            }
            segments.Add(trimmed);
        }
        return "/" + string.Join('/', segments);
    }
}
