using Celer.Server.Serving;

namespace Celer.Server.Media;

/// <summary>RFC 2397 <c>data:[&lt;mediatype&gt;][;param=value]*;base64,&lt;data&gt;</c>, read as vLLM's <c>_load_data_url</c> reads it.</summary>
internal static class DataUrl
{
    public static byte[] Decode(ImagePart part, ByteBudget budget)
    {
        var url = part.Url;
        var comma = url.IndexOf(',', StringComparison.Ordinal);
        if (comma < 0)
            throw OpenAIException.BadRequest($"The data URL of {part.Param} has no ',' before its data.", part.Param);
        var spec = url[5..comma];
        var lastSemicolon = spec.LastIndexOf(';');
        if (lastSemicolon < 0 || !spec[(lastSemicolon + 1)..].Equals("base64", StringComparison.OrdinalIgnoreCase))
            throw OpenAIException.BadRequest($"The data URL of {part.Param} is not base64: only base64 data URLs are supported.", part.Param);
        var mediaType = spec[..lastSemicolon].Split(';')[0];
        // vLLM hands any data URL to PIL; Celer takes only what says it is an image, so a mislabelled upload is caught by name.
        if (!mediaType.StartsWith("image/", StringComparison.OrdinalIgnoreCase))
        {
            throw OpenAIException.BadRequest(
                $"The data URL of {part.Param} has the media type '{mediaType}'; an image part takes image/* data (data:image/png;base64,…).", part.Param);
        }

        var data = url.AsSpan(comma + 1);
        // Refused before decoding: base64 holds 3 bytes in every 4 characters.
        budget.Take((long)data.Length / 4 * 3, part.Param);
        try
        {
            return Convert.FromBase64String(data.ToString());
        }
        catch (FormatException)
        {
            throw OpenAIException.BadRequest($"The data URL of {part.Param} is not valid base64.", part.Param);
        }
    }
}
