using Celer.Server.Serving;

namespace Celer.Server.Media;

/// <summary>
/// <c>file:</c> image URLs, as vLLM's <c>_load_file_url</c>: refused unless <c>--allowed-local-media-path</c> is given,
/// and then only for files under that directory once symbolic links are resolved (a link inside it pointing out is
/// refused). Errors say nothing of the server's own paths.
/// </summary>
internal static class LocalMediaFile
{
    /// <summary>Linux's limit on links followed in one path lookup (ELOOP).</summary>
    private const int MaxSymbolicLinks = 40;

    public static async Task<byte[]> ReadAsync(Uri url, ImagePart part, string? allowedPath, ByteBudget budget, CancellationToken cancellationToken)
    {
        if (allowedPath is null)
            throw OpenAIException.BadRequest($"The image of {part.Param} is a file URL: the server loads no local files without --allowed-local-media-path.", part.Param);
        if (!url.IsLoopback && url.Host.Length > 0)
            throw OpenAIException.BadRequest($"The file URL of {part.Param} names a host; a local file is file:///path.", part.Param);

        string path;
        try
        {
            var links = 0;
            path = ResolveLinks(url.LocalPath, ref links);
            var root = ResolveLinks(allowedPath, ref links);
            if (!path.StartsWith(Path.TrimEndingDirectorySeparator(root) + Path.DirectorySeparatorChar, StringComparison.Ordinal))
                throw OpenAIException.BadRequest($"The file of {part.Param} is not under the server's --allowed-local-media-path.", part.Param);

            await using var file = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, bufferSize: 1, useAsync: true);
            budget.Take(file.Length, part.Param);
            var bytes = new byte[file.Length];
            await file.ReadExactlyAsync(bytes, cancellationToken);
            return bytes;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw OpenAIException.BadRequest($"The file of {part.Param} could not be read: no such readable file under the server's --allowed-local-media-path.", part.Param);
        }
    }

    /// <summary>The path with every symbolic link in it followed (realpath), at most <see cref="MaxSymbolicLinks"/> in all.</summary>
    private static string ResolveLinks(string path, ref int links)
    {
        var full = Path.GetFullPath(path);
        var resolved = Path.GetPathRoot(full)!;
        foreach (var name in full[resolved.Length..].Split(Path.DirectorySeparatorChar, StringSplitOptions.RemoveEmptyEntries))
        {
            var next = Path.Combine(resolved, name);
            if (new FileInfo(next).LinkTarget is { } target)
            {
                if (++links > MaxSymbolicLinks)
                    throw new IOException("Too many levels of symbolic links.");
                next = ResolveLinks(Path.Combine(resolved, target), ref links);
            }
            resolved = next;
        }
        return resolved;
    }
}
