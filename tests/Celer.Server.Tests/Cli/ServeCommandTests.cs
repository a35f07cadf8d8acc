using System.Net;
using System.Net.Sockets;
using Celer.Server.Tests.Support;
using Celer.Server.Tests.Integration;

namespace Celer.Server.Tests.Cli;

/// <summary><c>celer serve</c> on a port another process listens on fails with one clear line (checked before the model loads).</summary>
public sealed class ServeCommandTests
{
    [Fact]
    public async Task A_busy_port_is_refused_with_one_line_and_no_stack_trace()
    {
        using var other = new TcpListener(IPAddress.Loopback, 0);
        other.Start();
        int port = ((IPEndPoint)other.LocalEndpoint).Port;
        (int exitCode, string output, string error) = await CelerCli.RunAsync("serve", ServerFixture.DefaultModel, "--port", $"{port}");

        Assert.Equal(1, exitCode);
        Assert.Equal($"error: --port {port}: 127.0.0.1:{port} is already in use (another server?); stop it or pick another port.{Environment.NewLine}", error);
        Assert.Empty(output);
    }
}
