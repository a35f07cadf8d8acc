using Celer.Cli;
using Celer.Server.Tests.Integration;

namespace Celer.Server.Tests.Cli;

/// <summary><c>celer chat</c> on the CPU with the default model, its console input and output redirected.</summary>
[Collection(ServerCollection.Name)]
public sealed class ChatCommandTests
{
    [Fact]
    public async Task Max_tokens_bounds_each_reply()
    {
        TextReader stdin = Console.In;
        TextWriter stdout = Console.Out;
        var output = new StringWriter();
        try
        {
            Console.SetIn(new StringReader("Write a long story about a list.\n\n"));
            Console.SetOut(output);
            int exitCode = await CelerCommandLine.CreateRoot().Parse(["chat", "--max-tokens", "3", "--temperature", "0"])
                .InvokeAsync(new() { Output = output, Error = new StringWriter(), ProcessTerminationTimeout = null }, TestContext.Current.CancellationToken);
            Assert.Equal(0, exitCode);
        }
        finally
        {
            Console.SetIn(stdin);
            Console.SetOut(stdout);
        }

        // "> " prompts, the reply, a newline, the next "> ". Three tokens of this model are a few words at most; the
        // reply used to run to the end of the context (thousands of characters).
        string reply = output.ToString().Split("> ", StringSplitOptions.RemoveEmptyEntries)[0].Trim();
        Assert.NotEmpty(reply);
        Assert.True(reply.Length <= 40, $"a reply of {reply.Length} characters for --max-tokens 3: '{reply}'");
    }
}
