using System.Net.Http.Headers;
using System.Net.Security;
using System.Security.Cryptography.X509Certificates;

namespace Celer.Router;

/// <summary>
/// Where the Kubernetes API server is and how the router authenticates to it: in a pod, the service's address from
/// <c>KUBERNETES_SERVICE_HOST</c>/<c>_PORT</c> and the service account's token, CA and namespace files (client-go's
/// in-cluster config).
/// </summary>
/// <param name="CaCertificatePath">The CA that signed the API server's certificate; null: the system's trust store.</param>
internal sealed record KubernetesApiServer(Uri Url, string TokenPath, string? CaCertificatePath, string NamespacePath)
{
    private const string ServiceAccount = "/var/run/secrets/kubernetes.io/serviceaccount/";

    /// <exception cref="ArgumentException">Not in a pod: the service environment variables are not set.</exception>
    public static KubernetesApiServer InCluster()
    {
        var host = Environment.GetEnvironmentVariable("KUBERNETES_SERVICE_HOST");
        var port = Environment.GetEnvironmentVariable("KUBERNETES_SERVICE_PORT");
        if (string.IsNullOrEmpty(host) || string.IsNullOrEmpty(port))
            throw new ArgumentException("--service-discovery k8s: KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT are not set; the router must run in a pod.");
        // The service host is an IP; an IPv6 one needs brackets in a URL.
        var authority = host.Contains(':', StringComparison.Ordinal) ? $"[{host}]:{port}" : $"{host}:{port}";
        return new KubernetesApiServer(new Uri($"https://{authority}/"), ServiceAccount + "token", ServiceAccount + "ca.crt", ServiceAccount + "namespace");
    }

    /// <summary>The router's own pod's namespace (the default of <c>--k8s-namespace</c>).</summary>
    /// <exception cref="ArgumentException">The namespace file cannot be read.</exception>
    public string ReadNamespace()
    {
        try
        {
            return File.ReadAllText(NamespacePath).Trim();
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new ArgumentException($"--k8s-namespace: not given, and the pod's namespace cannot be read from {NamespacePath}: {e.Message}", e);
        }
    }

    /// <summary>
    /// The bearer token, read at each request: service account tokens are projected and rotated by the kubelet (an hour
    /// by default), so one read at startup would expire.
    /// </summary>
    public AuthenticationHeaderValue ReadToken() => new("Bearer", File.ReadAllText(TokenPath).Trim());

    /// <summary>A client that trusts <see cref="CaCertificatePath"/>'s CA alone (the cluster's CA is in no system store).</summary>
    public HttpClient CreateClient()
    {
#pragma warning disable CA2000 // the returned client owns the handler and disposes it with itself
        var handler = new SocketsHttpHandler();
#pragma warning restore CA2000
        if (CaCertificatePath is not null)
        {
            var ca = X509CertificateLoader.LoadCertificateFromFile(CaCertificatePath);
            handler.SslOptions.RemoteCertificateValidationCallback = (_, certificate, _, errors) =>
            {
                // The name must still match; only the chain is checked against the cluster's CA instead of the system's.
                if (certificate is null || (errors & SslPolicyErrors.RemoteCertificateNameMismatch) != 0)
                    return false;
                using var chain = new X509Chain();
                chain.ChainPolicy.TrustMode = X509ChainTrustMode.CustomRootTrust;
                chain.ChainPolicy.CustomTrustStore.Add(ca);
                chain.ChainPolicy.RevocationMode = X509RevocationMode.NoCheck;
                return chain.Build(new X509Certificate2(certificate));
            };
        }
        // Watches stay open for minutes; each request bounds its own time instead (KubernetesPodWatcher).
        return new HttpClient(handler) { BaseAddress = Url, Timeout = Timeout.InfiniteTimeSpan };
    }
}
