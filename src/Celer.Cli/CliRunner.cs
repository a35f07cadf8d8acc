using System.CommandLine;
using Celer.Models.Weights;
using Celer.Tokenization;

namespace Celer.Cli;

/// <summary>Runs a command body and turns user errors into one line on the invocation's error writer (stderr) and exit code 1.</summary>
internal static class CliRunner
{
    public static async Task<int> RunAsync(ParseResult result, Func<Task<int>> body)
    {
        var error = result.InvocationConfiguration.Error;
        try
        {
            return await body();
        }
        catch (CliException e)
        {
            await error.WriteLineAsync($"error: {e.Message}");
            return 1;
        }
        catch (Exception e) when (e is ModelLoadException or TokenizerLoadException or ArgumentException or IOException or UnauthorizedAccessException)
        {
            // Loading failures and bad flag values (EngineArgs.Validate throws ArgumentException naming the flag)
            // are the user's to fix: say what, not where in our code.
            await error.WriteLineAsync($"error: {e.Message}");
            return 1;
        }
        catch (OperationCanceledException)
        {
            return 130;
        }
    }
}
