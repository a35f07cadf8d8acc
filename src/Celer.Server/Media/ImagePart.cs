namespace Celer.Server.Media;

/// <summary>An image content part of a chat request: its URL and where it sits (<c>messages[1].content[0]</c>), for errors.</summary>
internal sealed record ImagePart(string Url, string Param);
