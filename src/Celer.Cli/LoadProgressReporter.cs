using Celer.Engine;
using Celer.Engine.Execution;

namespace Celer.Cli;

/// <summary>
/// Shows model loading: a redrawn progress bar on a terminal, plain log lines when stderr is
/// redirected (a log file or a container's log stream should not fill with carriage returns).
/// </summary>
internal sealed class LoadProgressReporter : IProgress<ModelLoadProgress>
{
    private const int BarWidth = 30;
    private readonly bool _interactive = !Console.IsErrorRedirected && !Console.IsOutputRedirected;
    /// <summary>Log lines at every tenth of the load, not per tensor.</summary>
    private const int LogSteps = 10;

    private readonly Lock _gate = new();
    private int _lastLoggedStep = -1;

    /// <summary>One startup line of the loader (phase times, KV cache size, graphs recorded), on stderr.</summary>
    public static void Log(string line) => Console.Error.WriteLine($"[celer] {line}");

    public void Report(ModelLoadProgress value)
    {
        lock (_gate)
        {
            var fraction = value.TotalBytes is > 0 ? Math.Clamp((double)value.BytesLoaded / value.TotalBytes.Value, 0, 1)
                : value.TotalTensors is > 0 ? Math.Clamp((double)value.TensorsLoaded / value.TotalTensors.Value, 0, 1)
                : 0;
            var tensors = value.TotalTensors is { } total ? $"{value.TensorsLoaded}/{total}" : $"{value.TensorsLoaded}";
            if (_interactive)
            {
                var filled = (int)(fraction * BarWidth);
                Console.Error.Write($"\rLoading weights [{new string('#', filled)}{new string('.', BarWidth - filled)}] {fraction,4:P0} ({tensors} tensors, {value.BytesLoaded >> 20} MiB)");
                if (fraction >= 1)
                    Console.Error.WriteLine();
                return;
            }
            var step = (int)(fraction * LogSteps);
            if (step != _lastLoggedStep)
            {
                _lastLoggedStep = step;
                Console.Error.WriteLine($"[celer] loading weights: {fraction:P0} ({tensors} tensors, {value.BytesLoaded >> 20} MiB)");
            }
        }
    }
}
