namespace Celer.Server.Tests.Integration;

internal static class HttpClientJson
{
    /// <summary>POSTs a JSON body; the content is disposed once the response has come (HttpClient leaves it to the caller).</summary>
    public static async Task<HttpResponseMessage> PostJsonAsync(this HttpClient client, string path, string json)
    {
        using var content = HttpApiTests.Json(json);
        return await client.PostAsync(path, content);
    }
}
